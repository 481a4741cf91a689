//! `euid-map completions SHELL` and `euid-map man`: shell completions and the man page,
//! generated from the clap definitions, so they never drift from the flags.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};

/// Arguments of `euid-map completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Install:\n  bash: euid-map completions bash > /etc/bash_completion.d/euid-map\n        (or ~/.local/share/bash-completion/completions/euid-map)\n  zsh:  euid-map completions zsh > \"${fpath[1]}/_euid-map\"\n  fish: euid-map completions fish > ~/.config/fish/completions/euid-map.fish"
)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Arguments of `euid-map man`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map man | man -l -\n  euid-map man --dir /usr/local/share/man/man1   # euid-map.1 and euid-map-map.1, …"
)]
pub(crate) struct ManArgs {
    /// Write euid-map.1 and one page per subcommand (euid-map-map.1, …) into DIR instead of
    /// printing the main page.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Writes `text` to stdout; a reader that stops early (`| head`) is no error.
fn print(text: &[u8]) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(super::exit::OK),
    }
}

/// Prints the completion script for the shell.
pub(super) fn completions(a: CompletionsArgs) -> anyhow::Result<u8> {
    let mut text = Vec::new();
    clap_complete::generate(a.shell, &mut super::Cli::command(), "euid-map", &mut text);
    print(&text)
}

/// Prints the man page, or writes every page into `--dir`.
pub(super) fn man(a: ManArgs) -> anyhow::Result<u8> {
    let cmd = super::Cli::command();
    match a.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            return print(&page);
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
        }
    }
    Ok(super::exit::OK)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_man_page_and_completions_name_every_subcommand() {
        let mut page = Vec::new();
        clap_mangen::Man::new(super::super::Cli::command())
            .render(&mut page)
            .expect("renders");
        let page = String::from_utf8(page).expect("roff is text");
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut super::super::Cli::command(),
            "euid-map",
            &mut bash,
        );
        let bash = String::from_utf8(bash).expect("text");
        for sub in [
            "hash",
            "map",
            "refresh",
            "optout",
            "normalize",
            "completions",
        ] {
            assert!(
                page.contains(&format!("euid\\-map\\-{sub}(1)")),
                "man page lacks {sub}"
            );
            assert!(bash.contains(sub), "bash completions lack {sub}");
        }
        assert!(bash.contains("--phone-region-col"));
    }
}
