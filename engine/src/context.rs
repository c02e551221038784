//! What the speakers of one run share, owned by whoever builds them (a session), never a
//! process global: loaded models and embedders (loaded once, shared by every speaker that
//! names them), and the counters speakers keep about themselves (persona consistency,
//! question matching), one set per label however many times a speaker is rebuilt.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};

/// Counters a speaker keeps, reported after a run (`eval`, `demo`).
pub trait Report: Send + Sync {
    /// One line for people ("12/40 checked answers disagree with the table, ...").
    fn line(&self) -> String;
}

/// Shared, loaded-once resources and speaker reports of one run or session.
#[derive(Default)]
pub struct Context {
    shared: Mutex<BTreeMap<String, Arc<dyn Any + Send + Sync>>>,
    reports: Mutex<BTreeMap<String, Arc<dyn Any + Send + Sync>>>,
    lines: Mutex<BTreeMap<String, Arc<dyn Report>>>,
}

impl Context {
    /// A context with nothing loaded yet.
    pub fn new() -> Context {
        Context::default()
    }

    /// The resource under `key`, made by `make` the first time it is asked for.
    pub fn shared<T: Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let mut all = self.shared.lock().map_err(|_| anyhow!("speaker context poisoned"))?;
        if let Some(v) = all.get(key) {
            return v.clone().downcast::<T>().map_err(|_| anyhow!("`{key}` holds another type"));
        }
        let v = Arc::new(make()?);
        all.insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// The report kept under `label` (one per label: a speaker rebuilt with the same label,
    /// e.g. the persona of `eval` played against each agent, adds to the same counters).
    pub fn report<T: Report + Default + 'static>(&self, label: &str) -> Result<Arc<T>> {
        let mut all = self.reports.lock().map_err(|_| anyhow!("speaker context poisoned"))?;
        if let Some(v) = all.get(label) {
            return v.clone().downcast::<T>().map_err(|_| anyhow!("report `{label}` holds another type"));
        }
        let v = Arc::new(T::default());
        all.insert(label.to_string(), v.clone());
        self.lines.lock().map_err(|_| anyhow!("speaker context poisoned"))?.insert(label.to_string(), v.clone());
        Ok(v)
    }

    /// Every report, by label, as lines.
    pub fn report_lines(&self) -> Vec<(String, String)> {
        self.lines.lock().map(|l| l.iter().map(|(k, r)| (k.clone(), r.line())).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicU64);

    impl Report for Count {
        fn line(&self) -> String {
            format!("{} replies", self.0.load(Ordering::Relaxed))
        }
    }

    #[test]
    fn resources_load_once_and_reports_are_one_per_label() {
        let c = Context::new();
        let mut loads = 0;
        let a = c
            .shared("m", || {
                loads += 1;
                Ok(7u32)
            })
            .unwrap();
        let b = c
            .shared("m", || {
                loads += 1;
                Ok(8u32)
            })
            .unwrap();
        assert_eq!((*a, *b, loads), (7, 7, 1));
        assert!(c.shared("m", || Ok("other type")).is_err());
        c.report::<Count>("p").unwrap().0.fetch_add(2, Ordering::Relaxed);
        c.report::<Count>("p").unwrap().0.fetch_add(3, Ordering::Relaxed);
        assert_eq!(c.report_lines(), vec![("p".to_string(), "5 replies".to_string())]);
    }
}
