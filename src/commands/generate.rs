//! `vipctl generate …` (hidden): the man page and shell completions, made from the clap definitions
//! so they never drift from `--help`. Packaging runs it at build time (scripts/package.sh).

use std::io::{self, Write};

use anyhow::anyhow;
use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::{Failure, Outcome};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// The man page, roff (vipctl.1).
    Man,
    /// Bash completion (/usr/share/bash-completion/completions/vipctl).
    CompleteBash,
    /// Zsh completion (/usr/share/zsh/vendor-completions/_vipctl).
    CompleteZsh,
    /// Fish completion (/usr/share/fish/vendor_completions.d/vipctl.fish).
    CompleteFish,
}

/// Print the man page or a shell completion script (for packaging; hidden from --help).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// man, complete-bash, complete-zsh or complete-fish.
    #[arg(value_enum)]
    pub kind: Kind,
}

/// Writes `kind` to stdout.
pub fn run(args: &Args) -> Outcome<()> {
    let kind = args.kind;
    let bytes = render(kind).map_err(|e| Failure::transient(anyhow!("cannot generate {kind:?}: {e}")))?;
    let mut out = io::stdout().lock();
    out.write_all(&bytes).and_then(|()| out.flush()).map_err(|e| Failure::transient(anyhow!("cannot write: {e}")))
}

/// Renders `kind` into memory.
pub fn render(kind: Kind) -> io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut buf = Vec::new();
    match kind {
        Kind::Man => man(cmd, &mut buf)?,
        Kind::CompleteBash => clap_complete::generate(Shell::Bash, &mut visible(cmd), "vipctl", &mut buf),
        Kind::CompleteZsh => clap_complete::generate(Shell::Zsh, &mut visible(cmd), "vipctl", &mut buf),
        Kind::CompleteFish => clap_complete::generate(Shell::Fish, &mut visible(cmd), "vipctl", &mut buf),
    }
    Ok(buf)
}

/// The command without its hidden subcommands: clap_complete would otherwise offer `generate`.
fn visible(root: clap::Command) -> clap::Command {
    let subs: Vec<clap::Command> = root.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let mut cmd = clap::Command::new("vipctl")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(root.get_arguments().cloned())
        .subcommands(subs);
    if let Some(about) = root.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// The man page's DESCRIPTION (the `--help` text is kept short; a man page can say more).
const DESCRIPTION: &str = "vipctl keeps a virtual IP (VIP) on whichever host runs the Redis (or Valkey) master, \
as Redis Sentinel decides it. When Sentinel fails over, the VIP moves to the new master, neighbours are told \
at once (gratuitous ARP, IPv6 unsolicited neighbour advertisements), and the old host lets go of it.

Sentinel runs vipctl as its client-reconfig-script: vipctl <master-name> <role> <state> <from-ip> <from-port> \
<to-ip> <to-port> (the same as vipctl hook ...). The hook asks the sentinels who the master is now and claims \
or releases the master's VIPs. A hook without CAP_NET_ADMIN and CAP_NET_RAW (as under Debian's sandboxed \
redis-sentinel.service) hands its event to the daemon, vipctl watch, over its Unix socket.

vipctl watch follows every sentinel's events, reconciles every few hundred milliseconds, claims only with a \
majority of sentinels reachable, releases on the minority side, and defends held VIPs.";

/// Roff for the sections clap cannot produce. A leading `'` or `.` in text lines is avoided on purpose.
const MAN_TAIL: &str = r#".SH FILES
.TP
\fI/etc/vipctl/vipctl.toml\fR
The configuration (\fB\-\-config\fR, env \fBVIPCTL_CONFIG\fR). The same file serves every Redis host.
.TP
\fI/run/vipctl/vipctl.sock\fR
The daemon's control socket, where unprivileged hooks hand their events (env \fBVIPCTL_SOCKET\fR).
.TP
\fI/run/vipctl\-lock/vipctl\-MASTER\-NETNS.lock\fR
Serialises runs for one master on one host; the folder is root's or vipctl's and writable by them only.
.TP
\fI/usr/libexec/vipctl/vipctl\fR
The binary, and the path to give Sentinel as \fIclient\-reconfig\-script\fR (\fI/usr/bin/vipctl\fR links to it).
.TP
\fI/usr/lib/systemd/system/vipctl\-watch.service\fR
The daemon's unit (as packaged), with only CAP_NET_ADMIN and CAP_NET_RAW.
.TP
\fI/usr/lib/systemd/system/redis\-sentinel.service.d/vipctl.conf\fR
Lets Debian's sandboxed sentinel execute the hook (ExecPaths=/usr/libexec/vipctl/, a folder, so that an upgrade keeps it executable).
.SH ENVIRONMENT
.TP
\fBVIPCTL_CONFIG\fR, \fBVIPCTL_LOG\fR
Defaults for \fB\-\-config\fR and \fB\-\-log\-level\fR.
.TP
\fBVIPCTL_LOG_FILE\fR, \fBVIPCTL_SOCKET\fR
Override the config's \fIlog_file\fR and \fI[watch] socket\fR.
.SH LOGS
Every decision is one line in syslog (facility daemon, tag vipctl; \fBjournalctl \-t vipctl\fR) and,
when set, in \fIlog_file\fR.
.SH SEE ALSO
\fBredis\-sentinel\fR(1), \fBsystemd.exec\fR(5), \fI/usr/share/doc/vipctl/README.md\fR
"#;

/// One complete page: the global options, then every subcommand's synopsis and options in a
/// COMMANDS section (clap_mangen alone would point at vipctl-claim(1) and friends, which no one ships).
fn man(root: clap::Command, out: &mut Vec<u8>) -> io::Result<()> {
    let subs: Vec<clap::Command> = root.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let page = clap_mangen::Man::new(root.long_about(DESCRIPTION));
    let mut raw = Vec::new();
    page.render_title(&mut raw)?;
    page.render_name_section(&mut raw)?;
    page.render_synopsis_section(&mut raw)?;
    page.render_description_section(&mut raw)?;
    page.render_options_section(&mut raw)?;
    raw.extend_from_slice(b".SH COMMANDS\n");
    for sub in subs {
        let name = sub.get_name().to_string();
        let aliases: Vec<String> = sub.get_visible_aliases().map(String::from).collect();
        let about = sub.get_long_about().or_else(|| sub.get_about()).map(ToString::to_string).unwrap_or_default();
        let sub_page =
            clap_mangen::Man::new(sub.bin_name(format!("vipctl {name}")).long_about(about).disable_help_flag(true));
        raw.extend_from_slice(format!(".SS {name}\n").as_bytes());
        let mut section = Vec::new();
        sub_page.render_synopsis_section(&mut section)?;
        section.extend_from_slice(b".PP\n");
        sub_page.render_description_section(&mut section)?;
        if !aliases.is_empty() {
            section.extend_from_slice(format!(".PP\nAlias: {}.\n", aliases.join(", ")).as_bytes());
        }
        sub_page.render_options_section(&mut section)?;
        // The pieces come with their own .SH headings; under a .SS they are just paragraphs.
        let text = String::from_utf8_lossy(&section);
        for line in text.lines().filter(|l| !l.starts_with(".SH ")) {
            raw.extend_from_slice(line.as_bytes());
            raw.push(b'\n');
        }
    }
    let mut extra = Vec::new();
    page.render_extra_section(&mut extra)?;
    raw.extend_from_slice(String::from_utf8_lossy(&extra).replacen(".SH EXTRA", ".SH \"EXIT STATUS\"", 1).as_bytes());
    raw.extend_from_slice(MAN_TAIL.as_bytes());
    page.render_version_section(&mut raw)?;
    // Every render call starts with the roff crate's `.ie/.el` definition of \*(Aq: keep only one.
    let raw = String::from_utf8_lossy(&raw);
    let mut prelude = true;
    for line in raw.lines() {
        let is_def = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if is_def && !prelude {
            continue;
        }
        prelude &= is_def;
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn text(kind: Kind) -> String {
        String::from_utf8(render(kind).unwrap()).unwrap()
    }

    #[test]
    fn man_page_names_every_visible_subcommand() {
        let man = text(Kind::Man);
        assert!(man.starts_with(".ie") || man.contains(".TH vipctl"), "not roff: {}", &man[..man.len().min(200)]);
        for sub in Cli::command().get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = sub.get_name();
            assert!(man.contains(name), "man page does not mention `{name}`");
        }
        for name in ["hook", "claim", "release", "status", "check", "watch"] {
            assert!(man.contains(name), "man page does not mention `{name}`");
        }
        assert!(!man.contains("generate"), "the hidden `generate` leaked into the man page");
    }

    #[test]
    fn completions_name_vipctl() {
        assert!(text(Kind::CompleteBash).contains("complete -F _vipctl"));
        assert!(text(Kind::CompleteZsh).starts_with("#compdef vipctl"));
        assert!(text(Kind::CompleteFish).contains("complete -c vipctl"));
        for kind in [Kind::CompleteBash, Kind::CompleteZsh, Kind::CompleteFish] {
            let t = text(kind);
            assert!(t.contains("vipctl") && t.contains("claim") && t.contains("watch"), "{kind:?}");
            assert!(!t.contains("generate"), "{kind:?} offers the hidden `generate`");
        }
    }

    #[test]
    fn generate_is_hidden_and_parses() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("generate"), "generate shows in --help");
        let cli = Cli::try_parse_from(["vipctl", "generate", "complete-zsh"]).unwrap();
        assert!(matches!(cli.command, crate::cli::Command::Generate(Args { kind: Kind::CompleteZsh })));
    }
}
