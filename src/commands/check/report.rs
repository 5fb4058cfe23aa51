//! What `vipctl doctor` found: a list of ok, warning and failure lines, each failure with its
//! fix, printed for people or as JSON.

use serde_json::json;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Item {
    level: Level,
    what: String,
    fix: Option<String>,
}

#[derive(Default)]
pub(super) struct Checks {
    items: Vec<Item>,
}

impl Checks {
    pub(super) fn ok(&mut self, what: impl Into<String>) {
        self.items.push(Item { level: Level::Ok, what: what.into(), fix: None });
    }
    pub(super) fn warn(&mut self, what: impl Into<String>, fix: Option<String>) {
        self.items.push(Item { level: Level::Warn, what: what.into(), fix });
    }
    pub(super) fn fail(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.items.push(Item { level: Level::Fail, what: what.into(), fix: Some(fix.into()) });
    }
    pub(super) fn failures(&self) -> usize {
        self.items.iter().filter(|i| i.level == Level::Fail).count()
    }
    pub(super) fn print(&self, json_out: bool) {
        if json_out {
            let items: Vec<_> = self
                .items
                .iter()
                .map(|i| {
                    let level = match i.level {
                        Level::Ok => "ok",
                        Level::Warn => "warn",
                        Level::Fail => "fail",
                    };
                    json!({"status": level, "check": i.what, "fix": i.fix})
                })
                .collect();
            let out = json!({"ok": self.failures() == 0, "failures": self.failures(), "checks": items});
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            return;
        }
        for i in &self.items {
            let tag = match i.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{tag}  {}", i.what);
            if let Some(fix) = &i.fix {
                println!("      fix: {fix}");
            }
        }
    }
}
