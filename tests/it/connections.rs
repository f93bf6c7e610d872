//! The connection budget (docs/connections.md): for every tier of the
//! template's `ConnectionBudget` mapping, the connections all functions can
//! hold at once on one cluster (the one that also holds the control plane,
//! the worst) stay within 85% of the tier's budget, and the doc's table gives
//! the same figures. Everything is read from template.yaml with its loops
//! expanded: the event sources and the function each one drives, the limits
//! they and the functions reference, each function's pool settings. Only what
//! the code does with a connection (which functions open more than their
//! control-plane pool) is written down here.

use crate::template::template;
use provisioning::Stage;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// The parameter that picks a tier, and the mapping it is a key of.
const TIER: &str = "ClusterConnectionBudget";
const MAPPING: &str = "ConnectionBudget";

/// The share of a budget the worst case may take: the rest is left to the
/// server's reserved superuser slots, operators and monitoring.
const MAX_SHARE_PERCENT: u64 = 85;

/// What an instance opens on the project's (or the registered) cluster
/// besides its control-plane pool of P.
#[derive(Clone, Copy)]
enum Extra {
    /// Up to P more connections.
    Pool,
    /// One more connection.
    One,
}

const PER_CLUSTER: [(&str, Extra); 6] = [
    // An admin pool of P per cluster (one admin connection per message in flight):
    // create-database creates the tenant's database and role, access switches the
    // role's LOGIN and ends its sessions, purge drops both.
    ("CreateDatabaseFunction", Extra::Pool),
    ("AccessFunction", Extra::Pool),
    ("PurgeFunction", Extra::Pool),
    // One tenant connection per message in flight (at most BATCH_CONCURRENCY <= P).
    ("CreateSchemaFunction", Extra::Pool),
    // One connection while POST /admin/clusters proves a cluster's credentials.
    ("ApiFunction", Extra::One),
    // The reconciler reads every cluster through its admin pool, one pass at a time.
    ("ReconcilerFunction", Extra::Pool),
];

/// The functions on a schedule, one instance each (reserved concurrency 1).
const SCHEDULED: [&str; 2] = ["SweeperFunction", "ReconcilerFunction"];

/// The migrations custom resource's handler: run by the deploy, one
/// control-plane connection and one to the cluster it registers.
const MIGRATE: (&str, u64) = ("MigrateFunction", 2);

/// One function's part of the worst case.
struct Share {
    function: String,
    instances: u64,
    pool: u64,
    connections: u64,
}

/// The argument of `!Name x` or `{Fn::Name: x}` (`{Ref: x}`).
fn argument<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(tagged) if tagged.tag == *name => Some(&tagged.value),
        Value::Mapping(entries) if entries.len() == 1 => {
            let long = if name == "Ref" {
                name.to_owned()
            } else {
                format!("Fn::{name}")
            };
            entries.get(long.as_str())
        }
        _ => None,
    }
}

/// A count the template gives as a number, a string, or
/// `!FindInMap [ConnectionBudget, !Ref ClusterConnectionBudget, Key]`, which
/// is resolved for `tier`. Anything else (a `Ref` to another parameter, say)
/// would not follow the tier and is refused.
fn count(t: &Value, tier: &str, v: &Value, what: &str) -> u64 {
    if let Some(arguments) = argument(v, "FindInMap") {
        let Some([map, top, key]) = arguments.as_sequence().map(Vec::as_slice) else {
            panic!("{what}: Fn::FindInMap takes [map, top key, key], got {arguments:?}");
        };
        assert_eq!(map.as_str(), Some(MAPPING), "{what}: looked up in {map:?}");
        assert_eq!(
            argument(top, "Ref").and_then(Value::as_str),
            Some(TIER),
            "{what}: keyed by {top:?} rather than by {TIER}"
        );
        let key = key
            .as_str()
            .unwrap_or_else(|| panic!("{what}: the key {key:?} is not a literal"));
        let found = &t["Mappings"][MAPPING][tier][key];
        return count(t, tier, found, &format!("{what} ({MAPPING}/{tier}/{key})"));
    }
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.unwrap_or_else(|| panic!("{what}: {v:?} is neither a count nor a {MAPPING} lookup"))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{other:?} is not a scalar"),
    }
}

/// The tiers: the parameter's allowed values, each of them a row of the
/// mapping and every row one of them.
fn tiers(t: &Value) -> Vec<String> {
    let parameter = &t["Parameters"][TIER];
    let mut allowed: Vec<String> = parameter["AllowedValues"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{TIER} lists its AllowedValues"))
        .iter()
        .map(scalar)
        .collect();
    let mut rows: Vec<String> = t["Mappings"][MAPPING]
        .as_mapping()
        .unwrap_or_else(|| panic!("the {MAPPING} mapping exists"))
        .keys()
        .map(scalar)
        .collect();
    allowed.sort();
    rows.sort();
    assert_eq!(
        allowed, rows,
        "{TIER}'s allowed values and {MAPPING}'s rows"
    );
    assert!(allowed.contains(&scalar(&parameter["Default"])));
    allowed
}

fn resources<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().expect("logical ids are strings"), r))
        .collect()
}

/// A function's environment variable: its own, else the Globals' one.
fn variable<'a>(t: &'a Value, function: &'a Value, name: &str) -> &'a Value {
    let own = &function["Properties"]["Environment"]["Variables"][name];
    if own.is_null() {
        &t["Globals"]["Function"]["Environment"]["Variables"][name]
    } else {
        own
    }
}

/// A function's setting: its own, else the Globals' one; None when unset.
fn property<'a>(t: &'a Value, function: &'a Value, name: &str) -> Option<&'a Value> {
    [
        &function["Properties"][name],
        &t["Globals"]["Function"][name],
    ]
    .into_iter()
    .find(|v| !v.is_null())
}

/// An event source's BatchSize: a count, or a parameter's default.
fn batch_size(t: &Value, tier: &str, v: &Value, id: &str) -> u64 {
    match argument(v, "Ref").and_then(Value::as_str) {
        Some(parameter) => count(
            t,
            tier,
            &t["Parameters"][parameter]["Default"],
            &format!("{id} BatchSize ({parameter}'s default)"),
        ),
        None => count(t, tier, v, &format!("{id} BatchSize")),
    }
}

/// A function's control-plane pool size, max(DB_POOL_SIZE, BATCH_CONCURRENCY),
/// and its BATCH_CONCURRENCY. Both must be set: the code's defaults would
/// otherwise decide, whatever the tier.
fn pool(t: &Value, tier: &str, id: &str, function: &Value) -> (u64, u64) {
    let setting = |name: &str| {
        let v = variable(t, function, name);
        assert!(!v.is_null(), "{id}: {name} is not set");
        count(t, tier, v, &format!("{id} {name}"))
    };
    let concurrency = setting("BATCH_CONCURRENCY");
    (setting("DB_POOL_SIZE").max(concurrency), concurrency)
}

/// Every function's part of the worst case on one cluster, at `tier`.
fn worst_case(t: &Value, tier: &str) -> Vec<Share> {
    let functions = resources(t, "AWS::Serverless::Function");
    let function = |id: &str| {
        functions
            .iter()
            .find(|(f, _)| *f == id)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| panic!("{id} is not a function of the template"))
    };

    // The instances each function's event sources allow: the sum of their
    // MaximumConcurrency (the dead-letter function has one source per DLQ).
    let mut polled: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, source) in resources(t, "AWS::Lambda::EventSourceMapping") {
        let p = &source["Properties"];
        let target = argument(&p["FunctionName"], "Ref")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{id}: FunctionName is not a Ref to a function"));
        let limit = count(
            t,
            tier,
            &p["ScalingConfig"]["MaximumConcurrency"],
            &format!("{id} MaximumConcurrency"),
        );
        assert!(
            (2..=1000).contains(&limit),
            "{id}: MaximumConcurrency {limit} is outside AWS's 2..=1000"
        );
        *polled.entry(target).or_default() += limit;
        // More messages at once than a batch holds could never be in flight.
        let (_, concurrency) = pool(t, tier, target, function(target));
        let batch = batch_size(t, tier, &p["BatchSize"], id);
        assert!(
            concurrency <= batch,
            "tier {tier}: {target}'s BATCH_CONCURRENCY {concurrency} exceeds {id}'s BatchSize {batch}"
        );
    }

    functions
        .iter()
        .map(|&(id, f)| {
            if id == MIGRATE.0 {
                assert!(!polled.contains_key(id), "{id} has an event source");
                return Share {
                    function: id.to_owned(),
                    instances: 1,
                    pool: 0,
                    connections: MIGRATE.1,
                };
            }
            let reserved = property(t, f, "ReservedConcurrentExecutions")
                .map(|v| count(t, tier, v, &format!("{id} ReservedConcurrentExecutions")));
            let instances = match (polled.get(id).copied(), reserved) {
                (Some(p), Some(r)) => p.min(r),
                (Some(n), None) | (None, Some(n)) => n,
                (None, None) => panic!(
                    "{id}: neither an event source's MaximumConcurrency nor \
                     ReservedConcurrentExecutions bounds its instances, and so its connections"
                ),
            };
            let (size, _) = pool(t, tier, id, f);
            let extra = match PER_CLUSTER.iter().find(|(name, _)| *name == id) {
                Some((_, Extra::Pool)) => size,
                Some((_, Extra::One)) => 1,
                None => 0,
            };
            Share {
                function: id.to_owned(),
                instances,
                pool: size,
                connections: instances * (size + extra),
            }
        })
        .collect()
}

fn total(shares: &[Share]) -> u64 {
    shares.iter().map(|s| s.connections).sum()
}

fn breakdown(shares: &[Share]) -> String {
    shares
        .iter()
        .map(|s| {
            format!(
                "  {}: {} instance(s), pool {}: {} connections",
                s.function, s.instances, s.pool, s.connections
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The formula's counts: S stages (a function and a DLQ each, as the code
/// lists them; tests/it/template.rs holds the template's loops to the same
/// list) and X stage functions that open up to P more connections per
/// instance on the cluster.
fn stages_and_extra_pools() -> (u64, u64) {
    let stages = Stage::ALL.len() as u64;
    let pools = PER_CLUSTER
        .iter()
        .filter(|(id, extra)| matches!(extra, Extra::Pool) && !SCHEDULED.contains(id))
        .count() as u64;
    (stages, pools)
}

/// The scheduled functions (C, one instance each) and how many of them open
/// an admin pool (R).
fn scheduled() -> (u64, u64) {
    let with_pool = PER_CLUSTER
        .iter()
        .filter(|(id, extra)| matches!(extra, Extra::Pool) && SCHEDULED.contains(id))
        .count() as u64;
    (SCHEDULED.len() as u64, with_pool)
}

/// docs/connections.md's formula, from the tier's row of the mapping:
/// P × (S·M + S·D + C + A) + X × P × M + R × P + A + 2 (S = 8, C = 2, X = 4,
/// R = 1 today).
fn formula(t: &Value, tier: &str) -> u64 {
    let row = |key: &str| count(t, tier, &t["Mappings"][MAPPING][tier][key], key);
    let p = row("DbPoolSize").max(row("BatchConcurrency"));
    let (m, d, a) = (
        row("MaximumConcurrency"),
        row("DeadLetterConcurrency"),
        row("ApiConcurrency"),
    );
    let (s, x) = stages_and_extra_pools();
    let (c, r) = scheduled();
    p * (s * m + s * d + c + a) + x * p * m + r * p + a + 2
}

#[test]
fn every_tier_keeps_the_worst_case_on_one_cluster_within_its_budget() {
    let t = template();
    for id in PER_CLUSTER.iter().map(|(id, _)| *id).chain([MIGRATE.0]) {
        assert_eq!(
            t["Resources"][id]["Type"].as_str(),
            Some("AWS::Serverless::Function"),
            "{id}"
        );
    }
    // The migrate function serves a custom resource: it runs on deploy only.
    let handler = format!("{}.Arn", MIGRATE.0);
    let serves_migrate = |r: &Value| {
        let token = argument(&r["Properties"]["ServiceToken"], "GetAtt").and_then(Value::as_str);
        r["Type"]
            .as_str()
            .is_some_and(|k| k.starts_with("Custom::"))
            && token == Some(handler.as_str())
    };
    let all = t["Resources"].as_mapping().unwrap();
    assert!(all.values().any(serves_migrate), "{handler}");

    for tier in tiers(&t) {
        let budget: u64 = tier.parse().expect("a tier is a number of connections");
        let shares = worst_case(&t, &tier);
        let worst = total(&shares);
        assert!(
            worst * 100 <= budget * MAX_SHARE_PERCENT,
            "tier {tier}: the worst case, {worst} connections, exceeds {MAX_SHARE_PERCENT}% of \
             the budget:\n{}",
            breakdown(&shares)
        );
        assert_eq!(
            worst,
            formula(&t, &tier),
            "tier {tier}: the template's worst case is not docs/connections.md's formula:\n{}",
            breakdown(&shares)
        );
    }
}

/// The cells of a markdown table row.
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// The first number in a table cell ("200 (default)" -> 200).
fn first_number(cell: &str) -> Option<u64> {
    let digits: String = cell
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn docs_connections_md_gives_every_tiers_figures_as_the_template_does() {
    let t = template();
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/connections.md"
    ))
    .unwrap();
    let lines: Vec<&str> = doc.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with('|') && l.contains("worst case"))
        .expect("docs/connections.md has a table with a 'worst case' column");
    assert!(
        lines[header + 1].starts_with("|---"),
        "{}",
        lines[header + 1]
    );
    let titles = cells(lines[header]);
    let rows: Vec<Vec<&str>> = lines[header + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|&l| cells(l))
        .collect();
    let default = scalar(&t["Parameters"][TIER]["Default"]);

    for tier in tiers(&t) {
        let budget: u64 = tier.parse().unwrap();
        let row = rows
            .iter()
            .find(|r| first_number(r[0]) == Some(budget))
            .unwrap_or_else(|| panic!("docs/connections.md has no row for tier {tier}"));
        assert_eq!(row.len(), titles.len(), "tier {tier}: {row:?}");
        assert_eq!(
            row[0].contains("default"),
            tier == default,
            "the default tier ({default}), and only it, is marked default"
        );
        let worst = total(&worst_case(&t, &tier));
        let limits = t["Mappings"][MAPPING][tier.as_str()].as_mapping().unwrap();
        for (title, cell) in titles.iter().zip(row) {
            let mut expected: Vec<(String, u64)> = Vec::new();
            if title.contains("worst case") {
                expected.push(("the worst case".into(), worst));
            }
            if title.contains("free") {
                let free = budget.saturating_sub(worst);
                expected.push(("the budget less the worst case".into(), free));
            }
            for (key, value) in limits {
                let key = key.as_str().unwrap();
                if title.contains(key) {
                    expected.push((key.into(), count(&t, &tier, value, key)));
                }
            }
            for (what, value) in expected {
                assert_eq!(
                    first_number(cell),
                    Some(value),
                    "docs/connections.md, tier {tier}, column '{title}': {what}"
                );
            }
        }
    }

    // The formula as the doc writes it, with today's counts.
    let (s, x) = stages_and_extra_pools();
    let (c, r) = scheduled();
    for term in [
        format!("worst = P × ({s}M + {s}D + {c} + A)"),
        format!("+ {x} × P × M"),
        format!("+ {r} × P"),
    ] {
        assert!(
            doc.contains(&term),
            "docs/connections.md's formula should read '{term}'"
        );
    }

    // The before/after list gives the default tier's figure.
    let worst = total(&worst_case(&t, &default));
    let after = lines
        .iter()
        .find(|l| l.starts_with("- After"))
        .expect("docs/connections.md has an '- After' line");
    assert!(
        after.contains(&format!(" {default}")) && after.contains(&format!(" {worst} ")),
        "docs/connections.md: '{after}' should give the default tier {default}'s {worst}"
    );
}
