//! `vipctl status`: per master, its VIPs, where they are bound, and who the sentinels say is master.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Ctx, ask_sentinels, is_this_host, managed};
use crate::control::{self, Request};
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
                            Answer::Master { addr, epoch, flags, .. } => json!({"master": addr.to_string(), "config_epoch": epoch, "flags": flags}),
                            Answer::Unknown => json!("unknown master"),
                            Answer::Unreachable(e) => json!({"unreachable": e}),
                        }
                    })).collect::<Vec<_>>(),
                })
            }
        };
        masters.push(json!({"name": master.name, "vips": vips, "sentinel": sentinel}));
    }
    // What the daemon believes, when one runs: its view is continuous, this command's is a snapshot.
    let daemon = match control::ask(&config.watch.socket, &Request::Status, Duration::from_secs(2)).await {
        Ok(reply) => reply.state.unwrap_or(Value::Null),
        Err(e) => {
            json!({"running": false, "socket": config.watch.socket.display().to_string(), "error": e.to_string()})
        }
    };
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "masters": masters, "daemon": daemon })).unwrap_or_default()
        );
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
        if let Some(d) = daemon["masters"].as_array().and_then(|a| a.iter().find(|d| d["name"] == m["name"])) {
            println!(
                "  daemon:   {} ({}); VIPs {}; {} transition(s), {} conflict(s){}",
                d["belief"].as_str().unwrap_or("?"),
                d["summary"].as_str().unwrap_or("no answer yet"),
                if d["holding"].as_bool() == Some(true) { "held" } else { "not held" },
                d["transitions"],
                d["conflicts"],
                d["last_change"]["at"]
                    .as_str()
                    .map(|t| format!("; last change {t}: {}", d["last_change"]["what"].as_str().unwrap_or("")))
                    .unwrap_or_default()
            );
            if let Some(e) = d["last_error"].as_str() {
                println!("  daemon error: {e}");
            }
        }
    }
    match daemon["pid"].as_u64() {
        Some(pid) => println!("daemon: vipctl watch pid {pid}, up since {}", daemon["started"].as_str().unwrap_or("?")),
        None => println!(
            "daemon: not running ({}: {})",
            config.watch.socket.display(),
            daemon["error"].as_str().unwrap_or("no answer")
        ),
    }
    Ok(())
}
