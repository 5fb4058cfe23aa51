//! `vipctl status`: per master, its VIPs, where they are bound, and who the sentinels say is master.

use serde_json::{Value, json};

use super::{Ctx, ask_sentinels, is_this_host, managed};
use crate::decide::interface_for;
use crate::error::Outcome;
use crate::netlink::Netlink;
use crate::sentinel::{Answer, Verdict};

/// Prints the status, as text or JSON. Reading needs no privilege.
pub async fn run(ctx: &Ctx, json_out: bool) -> Outcome<()> {
    let config = ctx.config()?;
    let managed = managed(&config);
    let nl = Netlink::open()?;
    let host = nl.snapshot().await?;
    let mut masters = Vec::new();
    for master in config.masters.values() {
        let vips: Vec<Value> = master
            .vips
            .iter()
            .map(|vip| {
                let iface = interface_for(master, vip, &host, &managed);
                let bound: Vec<String> = host
                    .bound(vip.addr)
                    .map(|a| format!("{}/{} dev {}", a.addr, a.prefix, host.name_of(a.index)))
                    .collect();
                json!({
                    "vip": vip.to_string(),
                    "interface": iface.as_ref().map(|(_, n)| n.clone()).ok(),
                    "interface_error": iface.as_ref().err().map(ToString::to_string),
                    "bound_here": !bound.is_empty(),
                    "bound": bound,
                })
            })
            .collect();
        let sentinel = match ask_sentinels(&config, master).await {
            None => Value::Null,
            Some(view) => {
                let (addr, this_host) = match view.verdict() {
                    Verdict::Master { addr, .. } => {
                        (Some(addr.to_string()), is_this_host(&addr.host, &host, &managed).ok())
                    }
                    _ => (None, None),
                };
                json!({
                    "master": addr,
                    "this_host": this_host,
                    "summary": view.summary(),
                    "reachable": view.reachable(),
                    "configured": view.answers.len(),
                    "answers": view.answers.iter().map(|(s, a)| json!({
                        "sentinel": s.to_string(),
                        "answer": match a {
                            Answer::Master { addr, epoch, flags } => json!({"master": addr.to_string(), "config_epoch": epoch, "flags": flags}),
                            Answer::Unknown => json!("unknown master"),
                            Answer::Unreachable(e) => json!({"unreachable": e}),
                        }
                    })).collect::<Vec<_>>(),
                })
            }
        };
        masters.push(json!({"name": master.name, "vips": vips, "sentinel": sentinel}));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({ "masters": masters })).unwrap_or_default());
        return Ok(());
    }
    for m in &masters {
        println!("master {}", m["name"].as_str().unwrap_or("?"));
        for v in m["vips"].as_array().into_iter().flatten() {
            let place = match (v["bound"].as_array().filter(|b| !b.is_empty()), v["interface"].as_str()) {
                (Some(b), _) => {
                    format!("bound here ({})", b.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                }
                (None, Some(i)) => format!("not bound here (would go on {i})"),
                (None, None) => format!("not bound here ({})", v["interface_error"].as_str().unwrap_or("no interface")),
            };
            println!("  vip {:<24} {place}", v["vip"].as_str().unwrap_or("?"));
        }
        match &m["sentinel"] {
            Value::Null => println!("  sentinel: none configured"),
            s => {
                let who = match s["this_host"].as_bool() {
                    Some(true) => " — this host",
                    Some(false) => " — another host",
                    None => "",
                };
                println!("  sentinel: {}{who}", s["summary"].as_str().unwrap_or("?"));
            }
        }
    }
    Ok(())
}
