//! Messages and their delivery: the payloads (JSON and Slack), Standard Webhooks signatures,
//! and one bounded HTTP attempt.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A new signing secret: `whsec_` and 32 random bytes in base64 (the Standard Webhooks form;
/// the key is the decoded bytes).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's key.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The `webhook-id` of a delivery.
pub fn message_id(id: uuid::Uuid) -> String {
    format!("msg_{}", id.simple())
}

/// The Slack form of a JSON payload: `text` (the fallback line) and `blocks`.
pub fn slack_form(payload: &Value) -> Value {
    let d = &payload["data"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let head = match payload["type"].as_str() {
        Some("incident.resolved") => "resolved",
        Some("incident.severity_changed") => "changed severity",
        _ => "firing",
    };
    let text = format!(
        "infoaudit monitor {} on {} {}: {} ({}: {})",
        s(&d["monitor"]["name"]),
        s(&d["model"]),
        s(&d["version"]),
        head,
        s(&d["verdict"]),
        s(&d["incident"]["severity"]),
    );
    let mut lines = Vec::new();
    for r in d["rules"].as_array().into_iter().flatten() {
        let num = |v: &Value| v.as_f64().map_or("—".to_string(), |x| format!("{x:.4}"));
        let mut line = format!(
            "• `{}` {}: value {} [{}, {}]",
            s(&r["metric"]),
            s(&r["verdict"]),
            num(&r["value"]),
            num(&r["ci_low"]),
            num(&r["ci_high"])
        );
        if !r["baseline"].is_null() {
            line.push_str(&format!(
                ", baseline {} {} (Δ {})",
                s(&r["baseline"]),
                num(&r["baseline_value"]),
                num(&r["delta"])
            ));
        }
        lines.push(line);
    }
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{text}*")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": if lines.is_empty() { "no rules".to_string() } else { lines.join("\n") }}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{}|decision {}>", s(&d["dashboard_url"]), s(&d["decision_id"]))}]}
        ]
    })
}

/// What one attempt gave.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency: Duration,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The most of a response body read (the rest is dropped with the connection).
pub const BODY_CAP: usize = 4096;

/// POST `body` to `url` with the Standard Webhooks headers; redirects are not followed, the
/// whole attempt is bounded by the client's timeout, and at most [`BODY_CAP`] bytes of the
/// answer are read.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &str,
    body: Vec<u8>,
) -> Attempt {
    let started = std::time::Instant::now();
    let ts = chrono::Utc::now().timestamp();
    let sig = sign(secret, id, ts, &body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("infoaudit/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let mut read = Vec::new();
            let mut error = None;
            while read.len() < BODY_CAP {
                match resp.chunk().await {
                    Ok(Some(c)) => read.extend_from_slice(&c[..c.len().min(BODY_CAP - read.len())]),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(format!("reading the answer: {e}"));
                        break;
                    }
                }
            }
            if !(200..300).contains(&status) && error.is_none() {
                let text = String::from_utf8_lossy(&read);
                let text: String = text.chars().take(200).collect();
                error = Some(format!("answered {status}: {text}"));
            }
            Attempt {
                status: Some(status),
                error,
                latency: started.elapsed(),
            }
        }
        Err(e) => Attempt {
            status: None,
            error: Some(if e.is_timeout() {
                "timed out".to_string()
            } else {
                format!("{e}")
            }),
            latency: started.elapsed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, ts, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
    }
}
