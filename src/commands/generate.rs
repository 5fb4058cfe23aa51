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

/// Writes `kind` to stdout.
pub fn run(kind: Kind) -> Outcome<()> {
    let bytes = render(kind).map_err(|e| Failure::transient(anyhow!("cannot generate {kind:?}: {e}")))?;
    let mut out = io::stdout().lock();
    out.write_all(&bytes).and_then(|()| out.flush()).map_err(|e| Failure::transient(anyhow!("cannot write: {e}")))
}

/// Renders `kind` into memory.
pub fn render(kind: Kind) -> io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    match kind {
        Kind::Man => clap_mangen::Man::new(cmd).render(&mut buf)?,
        Kind::CompleteBash => clap_complete::generate(Shell::Bash, &mut cmd, "vipctl", &mut buf),
        Kind::CompleteZsh => clap_complete::generate(Shell::Zsh, &mut cmd, "vipctl", &mut buf),
        Kind::CompleteFish => clap_complete::generate(Shell::Fish, &mut cmd, "vipctl", &mut buf),
    }
    Ok(buf)
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
        }
    }

    #[test]
    fn generate_is_hidden_and_parses() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("generate"), "generate shows in --help");
        let cli = Cli::try_parse_from(["vipctl", "generate", "complete-zsh"]).unwrap();
        assert!(matches!(cli.command, crate::cli::Command::Generate { kind: Kind::CompleteZsh }));
    }
}
