//! template.yaml and the local stack describe the same queues: names, redrive
//! and visibility settings, event sources and function binaries. (The local
//! stack builds its queues from `Stage` and `QueueSettings::default()`; this
//! test holds the template to the same values.)
//!
//! The template writes its per-stage resources once, in `Fn::ForEach` loops
//! (transform AWS::LanguageExtensions), so the tests read it with those loops
//! expanded as CloudFormation expands them at deploy time (`template()`).

use local_dev::{QueueSettings, LOCAL_QUEUE_NAME_PREFIX};
use provisioning::Stage;
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

fn raw_template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses")
}

/// template.yaml with every `Fn::ForEach::<Loop>` entry of its Conditions,
/// Resources and Outputs replaced by the entries it expands to.
pub(crate) fn template() -> Value {
    let mut t = raw_template();
    let mappings = t["Mappings"].clone();
    for section in ["Conditions", "Resources", "Outputs"] {
        if let Some(entries) = t.get(section).and_then(Value::as_mapping) {
            let expanded = expand_for_each(entries, &mappings);
            t[section] = Value::Mapping(expanded);
        }
    }
    t
}

/// `entries` with each `Fn::ForEach::<Loop>: [Identifier, [values], {body}]`
/// replaced by one copy of the body per value (see `substitute`), nested loops
/// included. A logical id produced twice is an error, as in CloudFormation.
fn expand_for_each(entries: &Mapping, mappings: &Value) -> Mapping {
    let mut out = Mapping::new();
    let mut add = |key: Value, value: Value| {
        let name = format!("{key:?}");
        assert!(out.insert(key, value).is_none(), "{name} is declared twice");
    };
    for (key, value) in entries {
        let Some(name) = key.as_str().and_then(|k| k.strip_prefix("Fn::ForEach::")) else {
            add(key.clone(), value.clone());
            continue;
        };
        let [identifier, collection, body] =
            value.as_sequence().map(Vec::as_slice).unwrap_or_default()
        else {
            panic!("Fn::ForEach::{name} is not [Identifier, Collection, Body]");
        };
        let identifier = identifier
            .as_str()
            .expect("the loop identifier is a string");
        let collection = collection
            .as_sequence()
            .unwrap_or_else(|| panic!("Fn::ForEach::{name}: the collection is a literal list"));
        for item in collection {
            let item = item.as_str().expect("collection values are strings");
            let copy = substitute(body, identifier, item, mappings);
            let copy = copy.as_mapping().expect("the loop body is a mapping");
            for (k, v) in expand_for_each(copy, mappings) {
                add(k, v);
            }
        }
    }
    out
}

/// A copy of `v` for one loop value, as AWS::LanguageExtensions makes it:
/// `${Id}` and `&{Id}` (the value without non-alphanumerics) are replaced in keys
/// and in `Fn::Sub` strings, and `Ref: Id` becomes the value. Then the functions
/// it resolves are resolved once their arguments are literals: `Fn::FindInMap`
/// (looked up in `mappings`), `Fn::Sub` (a plain string when nothing is left to
/// substitute), and the logical id given to `Ref` or `Fn::GetAtt`, which are
/// returned in their usual `!Ref Id` / `!GetAtt Id.Attribute` form. Other strings
/// are left alone, as CloudFormation leaves them.
fn substitute(v: &Value, id: &str, item: &str, mappings: &Value) -> Value {
    let placeholders = |s: &str| {
        let alphanumeric: String = item.chars().filter(char::is_ascii_alphanumeric).collect();
        s.replace(&format!("${{{id}}}"), item)
            .replace(&format!("&{{{id}}}"), &alphanumeric)
    };
    let recurse = |x: &Value| substitute(x, id, item, mappings);
    if let Some((function, argument)) = intrinsic(v) {
        match (function, argument) {
            ("Ref", Value::String(name)) if name == id => return Value::String(item.to_owned()),
            ("Ref", argument) => return call("Ref", recurse(argument)),
            ("Sub", Value::String(text)) => return sub(placeholders(text), Mapping::new()),
            ("Sub", Value::Sequence(parts)) => {
                let [text, Value::Mapping(variables)] = parts.as_slice() else {
                    panic!("Fn::Sub [text, variables] expected, got {parts:?}");
                };
                let text = placeholders(text.as_str().expect("the Fn::Sub text is a string"));
                let variables = variables.iter().map(|(k, x)| (k.clone(), recurse(x)));
                return sub(text, variables.collect());
            }
            ("FindInMap", Value::Sequence(arguments)) => {
                let arguments: Vec<Value> = arguments.iter().map(&recurse).collect();
                if let [Value::String(map), Value::String(top), Value::String(second)] =
                    arguments.as_slice()
                {
                    let found = &mappings[map.as_str()][top.as_str()][second.as_str()];
                    assert!(!found.is_null(), "no Mappings entry {map}/{top}/{second}");
                    return found.clone();
                }
                return call("FindInMap", Value::Sequence(arguments));
            }
            ("GetAtt", argument) => {
                let argument = recurse(argument);
                if let Some([Value::String(resource), Value::String(attribute)]) =
                    argument.as_sequence().map(Vec::as_slice)
                {
                    return call("GetAtt", Value::String(format!("{resource}.{attribute}")));
                }
                return call("GetAtt", argument);
            }
            _ => {}
        }
    }
    match v {
        Value::Sequence(items) => Value::Sequence(items.iter().map(&recurse).collect()),
        Value::Mapping(entries) => Value::Mapping(
            entries
                .iter()
                .map(|(k, x)| {
                    let k = k
                        .as_str()
                        .map_or_else(|| k.clone(), |k| placeholders(k).into());
                    (k, recurse(x))
                })
                .collect(),
        ),
        Value::Tagged(tagged) => call(&tagged.tag.to_string(), recurse(&tagged.value)),
        other => other.clone(),
    }
}

/// The name and argument of a call to one of the intrinsic functions `substitute`
/// resolves, in either YAML form: `!Name argument` or `{Fn::Name: argument}`.
fn intrinsic(v: &Value) -> Option<(&'static str, &Value)> {
    const FUNCTIONS: [(&str, &str); 4] = [
        ("Ref", "Ref"),
        ("Sub", "Fn::Sub"),
        ("FindInMap", "Fn::FindInMap"),
        ("GetAtt", "Fn::GetAtt"),
    ];
    match v {
        Value::Tagged(tagged) => FUNCTIONS
            .into_iter()
            .find(|(short, _)| tagged.tag == *short)
            .map(|(short, _)| (short, &tagged.value)),
        Value::Mapping(entries) if entries.len() == 1 => {
            let (key, argument) = entries.iter().next()?;
            FUNCTIONS
                .into_iter()
                .find(|(_, long)| key.as_str() == Some(long))
                .map(|(short, _)| (short, argument))
        }
        _ => None,
    }
}

/// `!Name argument`.
fn call(name: &str, argument: Value) -> Value {
    Value::Tagged(Box::new(TaggedValue {
        tag: Tag::new(name),
        value: argument,
    }))
}

/// `Fn::Sub` of `text` with its variables substituted where they are literal
/// strings or a `Ref` (a variable `{V: !Ref R}` becomes `${R}`, which `Fn::Sub`
/// reads as the same `Ref`): a plain string when nothing is left to substitute.
fn sub(mut text: String, variables: Mapping) -> Value {
    let mut rest = Mapping::new();
    for (name, value) in variables {
        let replacement = match intrinsic(&value) {
            Some(("Ref", Value::String(target))) => Some(format!("${{{target}}}")),
            _ => value.as_str().map(str::to_owned),
        };
        match replacement {
            Some(replacement) => {
                let name = name.as_str().expect("Fn::Sub variable names are strings");
                text = text.replace(&format!("${{{name}}}"), &replacement);
            }
            None => {
                rest.insert(name, value);
            }
        }
    }
    match (rest.is_empty(), text.contains("${")) {
        (true, false) => Value::String(text),
        (true, true) => call("Sub", Value::String(text)),
        (false, _) => call(
            "Sub",
            Value::Sequence(vec![text.into(), Value::Mapping(rest)]),
        ),
    }
}

/// The tag and value of `!Sub 'x'`, `!Ref x`, `!GetAtt a.b`.
fn tagged(v: &Value) -> (String, Value) {
    match v {
        Value::Tagged(t) => (t.tag.to_string(), t.value.clone()),
        other => (String::new(), other.clone()),
    }
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str().unwrap(), r))
        .collect()
}

fn parameter_default(t: &Value, name: &str) -> Value {
    t["Parameters"][name]["Default"].clone()
}

#[test]
fn the_template_declares_the_local_stacks_queues_with_the_same_redrive_and_visibility() {
    let t = template();
    let defaults = QueueSettings::default();
    assert_eq!(
        parameter_default(&t, "VisibilityTimeout").as_u64(),
        Some(u64::from(defaults.visibility_timeout_secs))
    );
    assert_eq!(
        parameter_default(&t, "MaxReceiveCount").as_u64(),
        Some(u64::from(defaults.max_receive_count))
    );
    assert_eq!(
        format!(
            "{}-",
            parameter_default(&t, "ResourcePrefix").as_str().unwrap()
        ),
        LOCAL_QUEUE_NAME_PREFIX
    );

    // Each stage's queue and DLQ, and the webhook's DLQ (only with a WebhookUrl).
    let queues: Vec<_> = resources_of_type(&t, "AWS::SQS::Queue")
        .into_iter()
        .filter(|(id, _)| *id != "WebhookDeadLetterQueue")
        .collect();
    assert_eq!(queues.len(), 2 * Stage::ALL.len());
    let by_name = |name: String| {
        queues
            .iter()
            .find(|(_, q)| {
                tagged(&q["Properties"]["QueueName"])
                    == ("!Sub".into(), Value::String(name.clone()))
            })
            .unwrap_or_else(|| panic!("no queue named {name}"))
    };
    for stage in Stage::ALL {
        let (_, queue) = by_name(format!("${{ResourcePrefix}}-{}", stage.queue_name()));
        let (dlq_id, dlq) = by_name(format!(
            "${{ResourcePrefix}}-{}",
            stage.dead_letter_queue_name()
        ));
        let props = &queue["Properties"];
        assert_eq!(
            tagged(&props["VisibilityTimeout"]),
            ("!Ref".into(), "VisibilityTimeout".into()),
            "{stage}"
        );
        assert_eq!(
            tagged(&dlq["Properties"]["VisibilityTimeout"]),
            ("!Ref".into(), "VisibilityTimeout".into()),
            "{stage} dlq"
        );
        let redrive = &props["RedrivePolicy"];
        assert_eq!(
            tagged(&redrive["maxReceiveCount"]),
            ("!Ref".into(), "MaxReceiveCount".into()),
            "{stage}"
        );
        assert_eq!(
            tagged(&redrive["deadLetterTargetArn"]),
            ("!GetAtt".into(), Value::String(format!("{dlq_id}.Arn"))),
            "{stage}"
        );
    }
}

#[test]
fn function_timeouts_stay_within_a_sixth_of_the_visibility_timeout() {
    let t = template();
    let timeout = &t["Parameters"]["FunctionTimeout"];
    let visibility = &t["Parameters"]["VisibilityTimeout"];
    assert!(6 * timeout["MaxValue"].as_u64().unwrap() <= visibility["MinValue"].as_u64().unwrap());
    assert!(6 * timeout["Default"].as_u64().unwrap() <= visibility["Default"].as_u64().unwrap());
    assert_eq!(
        tagged(&t["Globals"]["Function"]["Timeout"]),
        ("!Ref".into(), "FunctionTimeout".into())
    );
}

#[test]
fn every_queue_has_an_event_source_reporting_batch_item_failures_with_bounded_concurrency() {
    let t = template();
    let mappings = resources_of_type(&t, "AWS::Lambda::EventSourceMapping");
    assert_eq!(
        mappings.len(),
        2 * Stage::ALL.len(),
        "a stage function per queue, the dead-letter function on every DLQ"
    );
    for (id, m) in mappings {
        let p = &m["Properties"];
        assert_eq!(
            p["FunctionResponseTypes"],
            Value::Sequence(vec!["ReportBatchItemFailures".into()]),
            "{id}"
        );
        assert!(!p["ScalingConfig"]["MaximumConcurrency"].is_null(), "{id}");
        assert!(!p["BatchSize"].is_null(), "{id}");
    }
}

#[test]
fn every_function_binary_of_the_workspace_is_deployed_on_provided_al2023() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    let functions = resources_of_type(&t, "AWS::Serverless::Function");
    let mut binaries: Vec<String> = functions
        .iter()
        .map(|(id, f)| {
            assert_eq!(
                f["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda"),
                "{id}"
            );
            let runtime = f["Properties"]["Runtime"]
                .as_str()
                .or(globals["Runtime"].as_str());
            let handler = f["Properties"]["Handler"]
                .as_str()
                .or(globals["Handler"].as_str());
            assert_eq!(
                (runtime, handler),
                (Some("provided.al2023"), Some("bootstrap")),
                "{id}"
            );
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    binaries.sort();
    let mut expected: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    expected.sort();
    assert_eq!(binaries, expected);
}

/// Actions that support no resource-level permissions (the service
/// authorisation reference lists no resource type for them): a statement of
/// these alone may only be written with `Resource: '*'`.
const UNSCOPABLE_ACTIONS: [&str; 1] = ["secretsmanager:ListSecrets"];

#[test]
fn no_policy_statement_grants_every_resource() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().map(|l| l.split('#').next().unwrap()).collect();
    let mut unscopable = 0;
    for (n, code) in lines.iter().enumerate() {
        if !(code.contains("Resource:") && (code.contains("'*'") || code.contains("\"*\""))) {
            continue;
        }
        // The statement's Action, written on one line just before its Resource.
        let action = lines[..n]
            .iter()
            .rev()
            .take(3)
            .find_map(|l| l.trim().strip_prefix("Action:"))
            .map(str::trim);
        assert!(
            action.is_some_and(|a| UNSCOPABLE_ACTIONS.contains(&a)),
            "line {}: Resource '*' for {action:?}, which can be scoped",
            n + 1
        );
        unscopable += 1;
    }
    assert_eq!(unscopable, 1, "the reconciler's ListSecrets");
}

/// The stage's logical-id prefix: "create-database" -> "CreateDatabase".
fn logical_id_prefix(stage: Stage) -> String {
    stage
        .as_str()
        .split('-')
        .map(|word| word[..1].to_ascii_uppercase() + &word[1..])
        .collect()
}

#[test]
fn the_stage_loops_expand_to_every_stages_queues_event_sources_log_groups_and_alarms() {
    const PER_STAGE: [&str; 6] = [
        "Queue",
        "DeadLetterQueue",
        "EventSource",
        "LogGroup",
        "DeadLetterEventSource",
        "DeadLetterAlarm",
    ];
    let raw = raw_template();
    let ids: Vec<String> = Stage::ALL.into_iter().map(logical_id_prefix).collect();
    let is_loop = |key: &Value| key.as_str().unwrap().starts_with("Fn::ForEach::");

    // As written: the per-stage resources and outputs only in loops over every
    // stage in pipeline order, and each stage's name in the Stages mapping.
    let mut loops = 0;
    for section in ["Resources", "Outputs"] {
        for (key, value) in raw[section].as_mapping().unwrap() {
            if is_loop(key) {
                loops += 1;
                let collection: Vec<&str> = value[1]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert_eq!(collection, ids, "{key:?}");
            }
        }
    }
    assert_eq!(
        loops, 2,
        "a loop of per-stage resources and one of per-stage outputs"
    );
    let names = raw["Mappings"]["Stages"].as_mapping().unwrap();
    assert_eq!(names.len(), Stage::ALL.len());
    for (stage, id) in Stage::ALL.into_iter().zip(&ids) {
        assert_eq!(
            names[id.as_str()]["Name"].as_str(),
            Some(stage.queue_name()),
            "{stage}"
        );
        for suffix in PER_STAGE {
            assert!(
                raw["Resources"].get(format!("{id}{suffix}")).is_none(),
                "{id}{suffix} is also written out"
            );
        }
    }

    // Expanded: six resources per stage, wired to the stage's own queue,
    // function, log group and name.
    let t = template();
    let written_out = |section: &str| {
        raw[section]
            .as_mapping()
            .unwrap()
            .keys()
            .filter(|k| !is_loop(k))
            .count()
    };
    assert_eq!(
        t["Resources"].as_mapping().unwrap().len(),
        written_out("Resources") + PER_STAGE.len() * Stage::ALL.len()
    );
    assert_eq!(
        t["Outputs"].as_mapping().unwrap().len(),
        written_out("Outputs") + 2 * Stage::ALL.len()
    );
    let reference = |name: String| ("!Ref".to_owned(), Value::String(name));
    let attribute = |name: String| ("!GetAtt".to_owned(), Value::String(name));
    let substitution = |text: String| ("!Sub".to_owned(), Value::String(text));
    for (stage, id) in Stage::ALL.into_iter().zip(&ids) {
        let name = stage.queue_name();
        let resource = |suffix: &str, kind: &str| {
            let r = &t["Resources"][format!("{id}{suffix}").as_str()];
            assert_eq!(r["Type"].as_str(), Some(kind), "{id}{suffix}");
            r
        };
        resource("Queue", "AWS::SQS::Queue");
        let dlq = resource("DeadLetterQueue", "AWS::SQS::Queue");
        assert_eq!(
            tagged(&dlq["Properties"]["RedriveAllowPolicy"]["sourceQueueArns"][0]),
            substitution(format!(
                "arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:${{ResourcePrefix}}-{name}"
            ))
        );

        // The stage function consumes its queue once its log group exists.
        let source = resource("EventSource", "AWS::Lambda::EventSourceMapping");
        assert_eq!(
            tagged(&source["Properties"]["FunctionName"]),
            reference(format!("{id}Function"))
        );
        assert_eq!(
            tagged(&source["Properties"]["EventSourceArn"]),
            attribute(format!("{id}Queue.Arn"))
        );
        assert_eq!(
            source["DependsOn"].as_str(),
            Some(format!("{id}LogGroup").as_str())
        );
        let log_group = resource("LogGroup", "AWS::Logs::LogGroup");
        assert_eq!(
            tagged(&log_group["Properties"]["LogGroupName"]),
            substitution(format!("/aws/lambda/${{{id}Function}}"))
        );
        let function = resource("Function", "AWS::Serverless::Function");
        assert_eq!(
            function["Metadata"]["BuildProperties"]["Binary"].as_str(),
            Some(stage.as_str())
        );

        // The dead-letter function consumes its DLQ; an alarm watches its depth.
        let source = resource("DeadLetterEventSource", "AWS::Lambda::EventSourceMapping");
        assert_eq!(
            tagged(&source["Properties"]["FunctionName"]),
            reference("DeadLetterFunction".into())
        );
        assert_eq!(
            tagged(&source["Properties"]["EventSourceArn"]),
            attribute(format!("{id}DeadLetterQueue.Arn"))
        );
        assert_eq!(source["DependsOn"].as_str(), Some("DeadLetterLogGroup"));
        let alarm = resource("DeadLetterAlarm", "AWS::CloudWatch::Alarm");
        assert_eq!(
            tagged(&alarm["Properties"]["AlarmName"]),
            substitution(format!("${{ResourcePrefix}}-{name}-dlq-not-empty"))
        );
        assert_eq!(
            alarm["Properties"]["AlarmDescription"].as_str(),
            Some(
                format!(
                    "Messages are waiting in the {name} DLQ (the dead-letter function is not draining it)."
                )
                .as_str()
            )
        );
        assert_eq!(
            tagged(&alarm["Properties"]["Dimensions"][0]["Value"]),
            attribute(format!("{id}DeadLetterQueue.QueueName"))
        );

        for (output, queue) in [
            ("QueueUrl", "Queue"),
            ("DeadLetterQueueUrl", "DeadLetterQueue"),
        ] {
            assert_eq!(
                tagged(&t["Outputs"][format!("{id}{output}").as_str()]["Value"]),
                reference(format!("{id}{queue}"))
            );
        }
    }
}

/// The `!GetAtt` targets of a function's SAM policy templates of one kind
/// (`SQSPollerPolicy`, `SQSSendMessagePolicy`): "ValidateQueue.QueueName", ...
fn policy_template_queues(function: &Value, kind: &str) -> Vec<String> {
    function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|policy| policy.get(kind))
        .map(|p| match tagged(&p["QueueName"]) {
            (tag, Value::String(target)) if tag == "!GetAtt" => target,
            other => panic!("{kind}: QueueName {other:?} is not a !GetAtt"),
        })
        .collect()
}

/// The inline statements of a function's policies (`- Statement: [...]`).
fn statements(function: &Value) -> Vec<&Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|policy| policy.get("Statement").and_then(Value::as_sequence))
        .flatten()
        .collect()
}

/// A scalar or a list of them, as IAM writes Action and Resource.
fn one_or_many(v: &Value) -> Vec<Value> {
    match v {
        Value::Sequence(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn each_stage_polls_its_own_queue_and_the_sweeper_api_and_dead_letter_reach_every_stage() {
    let t = template();
    let r = &t["Resources"];
    let ids: Vec<String> = Stage::ALL.into_iter().map(logical_id_prefix).collect();
    let every = |suffix: &str| sorted(ids.iter().map(|id| format!("{id}{suffix}")).collect());

    for id in &ids {
        assert_eq!(
            policy_template_queues(&r[format!("{id}Function").as_str()], "SQSPollerPolicy"),
            [format!("{id}Queue.QueueName")],
            "{id}Function polls its own queue and no other"
        );
    }
    // The sweeper re-kicks a run at whichever stage it stopped, and starts purges.
    assert_eq!(
        sorted(policy_template_queues(
            &r["SweeperFunction"],
            "SQSSendMessagePolicy"
        )),
        every("Queue.QueueName"),
        "SweeperFunction sends to every stage queue"
    );
    // The API starts provisioning and lifecycle runs and retries any stage.
    let api = statements(&r["ApiFunction"]);
    let send = api
        .iter()
        .find(|s| s["Sid"].as_str() == Some("SendToEveryStage"))
        .expect("ApiFunction has a SendToEveryStage statement");
    let targets = one_or_many(&send["Resource"])
        .iter()
        .map(|v| match tagged(v) {
            (tag, Value::String(target)) if tag == "!GetAtt" => target,
            other => panic!("SendToEveryStage: {other:?} is not a !GetAtt"),
        })
        .collect();
    assert_eq!(sorted(targets), every("Queue.Arn"));
    // The dead-letter function drains every DLQ.
    assert_eq!(
        sorted(policy_template_queues(
            &r["DeadLetterFunction"],
            "SQSPollerPolicy"
        )),
        every("DeadLetterQueue.QueueName"),
        "DeadLetterFunction polls every DLQ"
    );
}

#[test]
fn only_the_purge_function_may_delete_secrets_and_only_a_projects_own() {
    let t = template();
    let mut deleters = Vec::new();
    for (id, function) in resources_of_type(&t, "AWS::Serverless::Function") {
        for statement in statements(function) {
            let actions = one_or_many(&statement["Action"]);
            let deletes = actions.iter().any(|a| {
                let a = a.as_str().unwrap_or_default().to_ascii_lowercase();
                a == "*" || a == "secretsmanager:*" || a == "secretsmanager:deletesecret"
            });
            if !deletes {
                continue;
            }
            deleters.push(id);
            assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{id}");
            assert_eq!(
                actions,
                [Value::String("secretsmanager:DeleteSecret".into())],
                "{id}: DeleteSecret only"
            );
            let project = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${ResourcePrefix}/projects/";
            for resource in one_or_many(&statement["Resource"]) {
                let (tag, arn) = tagged(&resource);
                let arn = arn.as_str().unwrap_or_default().to_owned();
                assert!(
                    tag == "!Sub" && arn.starts_with(project) && arn.len() > project.len(),
                    "{id}: DeleteSecret on {arn}, not only on per-project secrets"
                );
            }
        }
    }
    assert_eq!(deleters, ["PurgeFunction"]);
}

#[test]
fn the_recovery_windows_reach_the_code_as_it_reads_them() {
    let t = template();
    const DAY: u64 = 24 * 3600;

    // RecoveryWindowDays -> RECOVERY_WINDOW_SECONDS, through a mapping (no
    // arithmetic in CloudFormation): one row per allowed value, days x 86400.
    let days = &t["Parameters"]["RecoveryWindowDays"];
    assert_eq!(days["Type"].as_str(), Some("String"), "a mapping key");
    let allowed: Vec<&str> = days["AllowedValues"]
        .as_sequence()
        .expect("RecoveryWindowDays lists its AllowedValues")
        .iter()
        .map(|v| v.as_str().expect("quoted: a String parameter"))
        .collect();
    assert!(allowed.contains(&days["Default"].as_str().unwrap()));
    assert!(allowed.contains(&"0"), "0 purges at once");
    let rows = t["Mappings"]["RecoveryWindow"].as_mapping().unwrap();
    assert_eq!(rows.len(), allowed.len(), "a mapping row per allowed value");
    for value in &allowed {
        let n: u64 = value.parse().unwrap();
        assert_eq!(
            rows[*value]["Seconds"].as_u64(),
            Some(n * DAY),
            "RecoveryWindow/{value}"
        );
    }
    let variable = &t["Globals"]["Function"]["Environment"]["Variables"]["RECOVERY_WINDOW_SECONDS"];
    let (tag, arguments) = tagged(variable);
    assert_eq!(tag, "!FindInMap");
    assert_eq!(arguments[0].as_str(), Some("RecoveryWindow"));
    assert_eq!(
        tagged(&arguments[1]),
        ("!Ref".into(), "RecoveryWindowDays".into())
    );
    assert_eq!(arguments[2].as_str(), Some("Seconds"));

    // SecretRecoveryDays -> the purge's SECRET_RECOVERY_DAYS: 0 (at once) or
    // Secrets Manager's 7..=30, as the code accepts.
    let secret_days = &t["Parameters"]["SecretRecoveryDays"];
    assert_eq!(secret_days["Default"].as_u64(), Some(0));
    for value in secret_days["AllowedValues"].as_sequence().unwrap() {
        let n = value.as_u64().expect("a number");
        assert!(n == 0 || (7..=30).contains(&n), "SecretRecoveryDays {n}");
    }
    assert_eq!(
        tagged(
            &t["Resources"]["PurgeFunction"]["Properties"]["Environment"]["Variables"]
                ["SECRET_RECOVERY_DAYS"]
        ),
        ("!Ref".into(), "SecretRecoveryDays".into())
    );
}

#[test]
fn every_operation_of_openapi_yaml_has_an_iam_authorised_route() {
    let t = template();
    let api = &t["Resources"]["ApiFunction"]["Properties"]["Events"];
    let mut routes = Vec::new();
    for (name, event) in api.as_mapping().unwrap() {
        let p = &event["Properties"];
        assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{name:?}");
        assert_eq!(
            p["Auth"]["Authorizer"].as_str(),
            Some("AWS_IAM"),
            "{name:?}"
        );
        if let (Some(method), Some(path)) = (p["Method"].as_str(), p["Path"].as_str()) {
            routes.push(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (path, operations) in doc["paths"].as_mapping().unwrap() {
        for method in ["get", "put", "post", "patch", "delete"] {
            if operations.get(method).is_some() {
                let route = format!("{} {}", method.to_ascii_uppercase(), path.as_str().unwrap());
                assert!(
                    routes.contains(&route),
                    "openapi.yaml's {route} has no route in template.yaml"
                );
            }
        }
    }
}

/// The dashboard and the latency alarm read the metrics the code emits
/// (`provisioning::metrics`): the dashboard body is JSON once substituted, and
/// every metric it or the alarm names is one the code writes.
#[test]
fn the_dashboard_and_the_latency_alarm_watch_the_metrics_the_code_emits() {
    let t = template();
    let body = &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"];
    let text = match body {
        serde_yaml::Value::Tagged(tagged) if tagged.tag == "!Sub" => {
            tagged.value.as_str().expect("a string").to_owned()
        }
        other => panic!("DashboardBody is not a !Sub string: {other:?}"),
    };
    let json = text
        .replace("${AWS::Region}", "us-east-1")
        .replace("${ResourcePrefix}", "provisioning");
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("the dashboard is JSON");
    let widgets = dashboard["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 4);
    let emitted = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/src/metrics.rs"
    ))
    .unwrap();
    for name in [
        "ProvisioningDuration",
        "ProjectsFailed",
        "MessagesDeadLettered",
        "StageDuration",
        "StageAttempts",
        "OperationDuration",
        "OperationsFailed",
    ] {
        assert!(json.contains(name), "the dashboard shows {name}");
        assert!(
            emitted.contains(&format!("\"{name}\"")),
            "the code emits {name}"
        );
    }
    for queue_metric in [
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
    ] {
        assert!(json.contains(queue_metric), "{queue_metric}");
    }
    let alarm = &t["Resources"]["ProvisioningDurationAlarm"]["Properties"];
    assert_eq!(
        alarm["Namespace"].as_str(),
        Some(provisioning::metrics::NAMESPACE)
    );
    assert_eq!(alarm["MetricName"].as_str(), Some("ProvisioningDuration"));
    assert_eq!(alarm["ExtendedStatistic"].as_str(), Some("p95"));
    // Without dimensions: the code emits an aggregate set ([]) beside Region/Cluster.
    assert!(alarm.get("Dimensions").is_none());
    assert!(t["Parameters"]["ProvisioningDurationAlarmMs"].is_mapping());
}

#[test]
fn every_function_but_migrate_may_put_events_on_the_stacks_bus_only_and_is_told_its_name() {
    let t = template();
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        tagged(&env["EVENT_BUS_NAME"]),
        ("!Ref".to_owned(), Value::String("EventBus".into()))
    );
    let mut putters = Vec::new();
    for (id, function) in resources_of_type(&t, "AWS::Serverless::Function") {
        let policies: Vec<&Value> = function["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("EventBridgePutEventsPolicy"))
            .collect();
        for policy in &policies {
            assert_eq!(
                tagged(&policy["EventBusName"]),
                ("!Ref".to_owned(), Value::String("EventBus".into())),
                "{id}: PutEvents on the stack's bus only"
            );
        }
        if !policies.is_empty() {
            putters.push(id);
        }
    }
    let mut expected: Vec<String> = resources_of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, _)| id.to_owned())
        .filter(|id| id != "MigrateFunction")
        .collect();
    expected.sort();
    assert_eq!(
        sorted(putters.iter().map(|s| s.to_string()).collect()),
        expected
    );
    assert_eq!(expected.len(), 12);

    // The bus is archived, every event of ours.
    let archive = &t["Resources"]["EventArchive"]["Properties"];
    assert_eq!(
        tagged(&archive["SourceArn"]),
        ("!GetAtt".to_owned(), Value::String("EventBus.Arn".into()))
    );
    assert_eq!(
        archive["EventPattern"]["source"][0].as_str(),
        Some(provisioning::events::SOURCE)
    );
}

#[test]
fn the_webhook_is_eventbridges_own_delivery_with_a_secret_header_retries_and_a_dead_letter_queue() {
    let t = template();
    assert_eq!(
        parameter_default(&t, "WebhookUrl"),
        Value::String(String::new())
    );
    let resources = &t["Resources"];
    for id in [
        "WebhookSecret",
        "WebhookConnection",
        "WebhookDestination",
        "WebhookDeadLetterQueue",
        "WebhookDeadLetterQueuePolicy",
        "WebhookRole",
        "WebhookRule",
        "WebhookUndeliveredAlarm",
    ] {
        assert_eq!(
            resources[id]["Condition"].as_str(),
            Some("HasWebhook"),
            "{id} exists only with a WebhookUrl"
        );
    }
    let connection = &resources["WebhookConnection"]["Properties"];
    assert_eq!(connection["AuthorizationType"].as_str(), Some("API_KEY"));
    let (_, value) = tagged(&connection["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"]);
    assert!(
        value
            .as_str()
            .unwrap()
            .starts_with("{{resolve:secretsmanager:${WebhookSecret}"),
        "the header value comes from the secret, never the template: {value:?}"
    );
    let destination = &resources["WebhookDestination"]["Properties"];
    assert_eq!(
        tagged(&destination["InvocationEndpoint"]),
        ("!Ref".to_owned(), Value::String("WebhookUrl".into()))
    );
    let rule = &resources["WebhookRule"]["Properties"];
    assert_eq!(
        tagged(&rule["EventBusName"]),
        ("!Ref".to_owned(), Value::String("EventBus".into()))
    );
    assert_eq!(
        tagged(&rule["EventPattern"]["detail-type"]),
        (
            "!Ref".to_owned(),
            Value::String("WebhookDetailTypes".into())
        )
    );
    let target = &rule["Targets"][0];
    assert_eq!(
        tagged(&target["Arn"]),
        (
            "!GetAtt".to_owned(),
            Value::String("WebhookDestination.Arn".into())
        )
    );
    assert!(
        target["RetryPolicy"]["MaximumRetryAttempts"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        tagged(&target["DeadLetterConfig"]["Arn"]),
        (
            "!GetAtt".to_owned(),
            Value::String("WebhookDeadLetterQueue.Arn".into())
        )
    );
    // The default detail types are real ones.
    let defaults = parameter_default(&t, "WebhookDetailTypes");
    for detail_type in defaults.as_str().unwrap().split(',') {
        assert!(
            provisioning::events::DETAIL_TYPES.contains(&detail_type),
            "{detail_type} is not a detail type"
        );
    }
}
