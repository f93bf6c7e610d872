//! Fault-injection points, compiled only with the `fault-injection` feature
//! (enabled by the integration tests' dev-dependency; never in a function as
//! shipped, where `point` is an empty inline function).
//!
//! A test arms a point for one project; when the code reaches it, the test is
//! told and the future never resumes. The test then drops it, which is what a
//! killed process looks like to Postgres: open transactions roll back, the
//! session (and its advisory lock) ends, nothing after the point happens.

#[cfg(feature = "fault-injection")]
mod armed {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::sync::oneshot;
    use uuid::Uuid;

    type Points = Mutex<HashMap<(Uuid, &'static str), oneshot::Sender<()>>>;

    fn points() -> &'static Points {
        static POINTS: std::sync::OnceLock<Points> = std::sync::OnceLock::new();
        POINTS.get_or_init(Default::default)
    }

    /// Arms `name` for `project_id` (or for any project: `Uuid::nil()`), once;
    /// the receiver fires when it is hit.
    pub fn arm(project_id: Uuid, name: &'static str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        points().lock().unwrap().insert((project_id, name), tx);
        rx
    }

    pub async fn point(project_id: Uuid, name: &'static str) {
        let armed = {
            let mut points = points().lock().unwrap();
            points
                .remove(&(project_id, name))
                .or_else(|| points.remove(&(Uuid::nil(), name)))
        };
        if let Some(hit) = armed {
            let _ = hit.send(());
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::{arm, point};

/// Without the feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn point(_project_id: uuid::Uuid, _name: &'static str) {}
