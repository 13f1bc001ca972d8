//! Secrets never reach a file, a log line or an error: `server.env` and `server.headers`
//! values (API keys, Hugging Face tokens, gateway tokens) and credentials in a URL are
//! replaced by [`REDACTED`] wherever the tool writes what it was given. One home, so every
//! writer redacts the same way. (`server.header_env` holds variable *names*, kept.)
//!
//! A saved experiment keeps the names of `server.env` but not their values; resuming it
//! takes each redacted value from the environment variable of the same name.

use serde_yaml::Value;

/// What a secret is written as.
pub const REDACTED: &str = "<redacted>";

/// The experiment document with every `server.env` value redacted (the names kept), and
/// any credential in `server.urls`.
pub fn redact_document(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(urls) = doc
        .get_mut("server")
        .and_then(|s| s.get_mut("urls"))
        .and_then(Value::as_sequence_mut)
    {
        for u in urls.iter_mut() {
            if let Some(s) = u.as_str() {
                *u = Value::String(redact_url(s));
            }
        }
    }
    for map in SECRET_MAPS {
        if let Some(m) = doc
            .get_mut("server")
            .and_then(|s| s.get_mut(*map))
            .and_then(Value::as_mapping_mut)
        {
            for (_, v) in m.iter_mut() {
                *v = Value::String(REDACTED.into());
            }
        }
    }
    doc
}

/// Mappings whose values may be secrets: names kept, values redacted.
const SECRET_MAPS: &[&str] = &["env", "headers"];

/// A parameter value as it may be written: `env` and `headers` values redacted, the rest
/// as it is.
pub fn redact_param(name: &str, v: &Value) -> Value {
    match (name, v.as_mapping()) {
        (n, Some(m)) if SECRET_MAPS.contains(&n) => Value::Mapping(
            m.iter()
                .map(|(k, _)| (k.clone(), Value::String(REDACTED.into())))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// `http://user:key@host/…` as `http://<redacted>@host/…`: a URL fit for a message.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_and_url_credentials_are_redacted() {
        let doc: Value =
            serde_yaml::from_str("name: x\nserver:\n  env:\n    HF_TOKEN: hf_secret\n    N: 3\n  headers:\n    X-Gw-Key: gw_secret\n")
                .unwrap();
        let text = serde_yaml::to_string(&redact_document(&doc)).unwrap();
        assert!(
            !text.contains("hf_secret") && text.contains("HF_TOKEN"),
            "{text}"
        );
        assert!(
            !text.contains("gw_secret") && text.contains("X-Gw-Key"),
            "{text}"
        );
        let v: Value = serde_yaml::from_str("{X-A: s3cret}").unwrap();
        assert!(
            !serde_yaml::to_string(&redact_param("headers", &v))
                .unwrap()
                .contains("s3cret")
        );
        assert_eq!(
            redact_url("http://me:sk-123@gw.example:8443/v1"),
            "http://<redacted>@gw.example:8443/v1"
        );
        assert_eq!(redact_url("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
        // an @ in the path is not a credential
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
    }
}
