//! Storage errors, and the scrubbing that keeps credentials and signed URLs out of them.

/// Errors of the storage layer. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL cannot be used.
    #[error("{url}: {why}")]
    BadUrl {
        /// The URL as given (without query string or user info).
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The binary was built without the cloud backends.
    #[error("{url}: this euid-map was built without object-store support (cargo feature `cloud`)")]
    NotBuilt {
        /// The URL as given.
        url: String,
    },
    /// The store's credentials or configuration are unusable.
    #[error("{url}: {why}")]
    Config {
        /// The URL.
        url: String,
        /// What is wrong (never a secret).
        why: String,
    },
    /// No such object or file.
    #[error("{url}: not found")]
    NotFound {
        /// The object or file.
        url: String,
    },
    /// The store cannot do what was asked (e.g. create-if-absent writes turned off).
    #[error("{url}: the store does not support {what}")]
    Unsupported {
        /// The object.
        url: String,
        /// The operation.
        what: &'static str,
    },
    /// An object that does not exist names a prefix with files under it.
    #[error("{url}: no such object, but it is a prefix with input files under it: end it with / to read them all ({url}/)")]
    PrefixWithoutSlash {
        /// The URL as given.
        url: String,
    },
    /// A prefix, directory or glob matched no input file.
    #[error("{url}: no input file (.csv, .tsv, .csv.gz, .tsv.gz, .parquet) matches")]
    NoInputs {
        /// The prefix, directory or glob as given.
        url: String,
    },
    /// The output directory lies inside an input directory, prefix or glob: its own parts
    /// would be read as input by a resumed or later run.
    #[error("-o {output} is inside the input {input}: its own parts would be read back as input on --resume or by the next run. Write the dataset outside the export's folder")]
    OutputInsideInput {
        /// The output as given.
        output: String,
        /// The input directory, prefix or glob.
        input: String,
    },
    /// A store request failed (after the client's retries).
    #[error("{url}: {op} failed: {message}")]
    Request {
        /// The object or prefix.
        url: String,
        /// What was attempted (`GET`, `PUT`, `LIST`…).
        op: &'static str,
        /// The store's message, scrubbed.
        message: String,
    },
    /// A local file operation failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StorageError {
    /// The I/O error kind behind a local failure, or what a store failure amounts to.
    pub fn is_not_found(&self) -> bool {
        match self {
            StorageError::NotFound { .. } => true,
            StorageError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Environment variables whose values are credentials: any of them found in a message is
/// replaced before the message is shown.
pub(super) const SECRET_VARS: [&str; 10] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
];

/// Removes what could be a credential from a store's message: query strings of URLs (SAS
/// tokens, presigned signatures) and the values of the credential variables.
pub(crate) fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')' || c == '>')
            .unwrap_or(tail.len());
        let url = &tail[..end];
        out.push_str(url.split(['?', '#']).next().unwrap_or(url));
        rest = &tail[end..];
    }
    out.push_str(rest);
    for var in SECRET_VARS {
        if let Ok(v) = std::env::var(var) {
            if v.len() >= 8 {
                out = out.replace(&v, "[redacted]");
            }
        }
    }
    out
}

/// Adds what to do to the store errors whose own words do not say it.
pub(crate) fn with_hint(message: String) -> String {
    let hint = if message.contains("URL scheme is not allowed") {
        Some("the endpoint is http://: set AWS_ALLOW_HTTP=true (for a local S3 such as moto or MinIO)")
    } else if message.contains("169.254.169.254")
        || message.contains("resolve_deny")
        || message.contains("instance metadata")
        || message.contains("metadata endpoint")
        || message.contains("/latest/api/token")
        || message.contains("/latest/meta-data")
    {
        Some("no AWS credentials found (tried: the environment, the AWS_PROFILE profile, web identity, the ECS task role, instance metadata); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{message} ({h})"),
        None => message,
    }
}

/// Shortens a store's XML error body to its code and message.
pub(super) fn tidy(message: &str) -> String {
    let Some(start) = message.find("<?xml").or_else(|| message.find("<Error>")) else {
        return message.to_string();
    };
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let from = message[start..].find(&open)? + start + open.len();
        let to = message[from..].find('<')? + from;
        Some(message[from..to].trim().to_string())
    };
    let head = message[..start].trim_end().trim_end_matches(':');
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{head}: {c}: {}", m.lines().next().unwrap_or_default()),
        (Some(c), None) => format!("{head}: {c}"),
        _ => head.to_string(),
    }
}

/// An error and its sources, `: `-separated, each said once.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// `s` without its query string, fragment and password, for messages.
pub(super) fn without_secrets(s: &str) -> String {
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            format!("{scheme}://***@{host}{}", &rest[authority_end..])
        }
        _ => s.to_string(),
    }
}
