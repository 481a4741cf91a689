//! `euid-map normalize`: one email or phone, normalized and hashed as a job would, printed
//! (support questions: "why is this phone invalid?", "what hash does this email get?").

use clap::Args;

use euid_map::normalize::{self, RowRegion};
use euid_map::record::PhoneForm;

/// Arguments of `euid-map normalize`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  euid-map normalize --phone '06 12 34 56 78' --phone-region FR\n  euid-map normalize --email ' Jane.Doe+news@GMAIL.com'\n\nPrints the normalized value and its hash (base64 SHA-256, the identity_hash of a dataset). Nothing leaves this machine.\nExit codes: 0 every value is valid; 1 a value is invalid (its reason is printed); 64 usage error."
)]
#[command(group(clap::ArgGroup::new("value").required(true).multiple(true).args(["email", "phone"])))]
pub(crate) struct NormalizeArgs {
    /// A raw email.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// A raw phone, in any format a dataset's phone column takes.
    #[arg(long, value_name = "PHONE")]
    phone: Option<String>,
    /// Region for a phone in national format, read as a row's `--phone-region-col` cell
    /// would be (any case; an unknown code gives the row's `unknown region` reason).
    #[arg(long, value_name = "CC")]
    phone_region: Option<String>,
}

/// Prints each value's normalized form and hash, or why it is invalid.
#[allow(clippy::print_stdout)]
pub(super) fn run(a: NormalizeArgs) -> anyhow::Result<u8> {
    const MISSING: &str = "  missing    (an empty cell: a job writes status missing)";
    let mut code = super::exit::OK;
    if let Some(e) = &a.email {
        println!("email {e:?}");
        match normalize::email(e) {
            _ if e.is_empty() => {
                println!("{MISSING}");
                code = super::exit::FATAL;
            }
            Some(n) => {
                println!("  normalized {n}");
                println!(
                    "  hash       {}",
                    normalize::sha256(n.as_bytes()).to_base64()
                );
            }
            None => {
                println!(
                    "  invalid    {}",
                    euid_map::record::InvalidReason::InvalidEmail.as_str()
                );
                code = super::exit::FATAL;
            }
        }
    }
    if let Some(p) = &a.phone {
        let region = RowRegion::of(a.phone_region.as_deref(), None);
        let shown = match region {
            RowRegion::Known(r) => format!(" (region {r})"),
            RowRegion::Unknown(c) => format!(" (region {c:?})"),
            RowRegion::None | RowRegion::Unreadable(_) => String::new(),
        };
        println!("phone {p:?}{shown}");
        match normalize::to_e164(p, region) {
            _ if p.is_empty() => {
                println!("{MISSING}");
                code = super::exit::FATAL;
            }
            Ok((e164, form)) => {
                let how = match form {
                    PhoneForm::Reformatted => "reformatted by libphonenumber's rules",
                    _ => "E.164 as given",
                };
                println!("  normalized {e164} ({how})");
                println!(
                    "  hash       {}",
                    normalize::sha256(e164.as_bytes()).to_base64()
                );
            }
            Err(r) => {
                println!("  invalid    {}", r.as_str());
                code = super::exit::FATAL;
            }
        }
    }
    Ok(code)
}
