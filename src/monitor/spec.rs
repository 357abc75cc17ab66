//! A monitor's definition: what it watches, what it judges, when, and where it reports; its
//! validation (every problem named by a JSON Pointer) and the outbound destination policy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::gate::Rule;

/// The version a monitor watches: exactly one of `alias`, `version`, or `latest: true`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// An alias such as `production` (followed as it moves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// A fixed version name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The model's newest version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<bool>,
}

/// Which of the target's results are judged: its last `batches` batches, or those uploaded in
/// the last `hours` hours (at most one of the two; neither: every batch of the version); only
/// batches whose jobs have all finished count (a batch still running is not in the window). Within
/// the window, mergeable estimators are pooled exactly, others judged on the latest batch (the
/// gate semantics).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The last this many batches (1–10000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10000)]
    pub batches: Option<u32>,
    /// The batches of the last this many hours (more than 0, at most 8784, a leap year).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 8784)]
    pub hours: Option<f64>,
}

/// When the monitor evaluates.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// When a batch of the target has all its jobs finished (default true).
    #[serde(default = "yes")]
    pub on_result: bool,
    /// When the target alias moves (default true; only for an alias target).
    #[serde(default = "yes")]
    pub on_alias_change: bool,
    /// On a schedule: a duration such as `30s`, `15m`, `6h`, `1d` (at least 10 s; 1–6 digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^([1-9][0-9]{0,5}[mhd]|[1-9][0-9]{1,5}s)$")]
    pub every: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            on_result: true,
            on_alias_change: true,
            every: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A JSON payload signed per the Standard Webhooks convention.
    Webhook,
    /// A Slack incoming webhook (`text` + `blocks`); signed the same way.
    Slack,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
        }
    }
}

/// Where messages go. The server creates each channel's signing secret (shown once, in the
/// answer to the PUT that created it).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Unique within the monitor.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// `http` or `https` URL of a public host named by DNS (internal addresses, and names that
    /// resolve to them, are refused unless the server runs with `--webhook-allow-private`; the
    /// pattern states the form, the address check happens at the PUT and before each delivery).
    #[schema(
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*(:[1-9][0-9]{0,3})?(/[!-~]*)?$"
    )]
    pub url: String,
}

/// Outcomes that send a message.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Fail,
    Warn,
    Inconclusive,
    /// The incident resolved (the verdict is back to pass, or to an outcome not listed).
    Recovered,
}

/// A monitor as written by a client.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "target": {"alias": "production"},
    "rules": [{"metric": "semantic_mi", "op": "gte", "threshold": 0.5}],
    "window": {"batches": 5},
    "triggers": {"on_result": true, "on_alias_change": true, "every": "15m"},
    "channels": [{"name": "ops", "type": "webhook", "url": "https://hooks.example.com/infoaudit"}],
    "notify_on": ["fail", "warn", "recovered"],
    "cooldown": "1h"
}))]
pub struct MonitorSpec {
    pub target: Target,
    /// A stored gate policy of the model, by name (its latest version at each evaluation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Inline rules (instead of `gate`), with the gate rule semantics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    #[serde(default)]
    pub window: Window,
    #[serde(default)]
    pub triggers: Triggers,
    /// At most 10, with distinct names.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub channels: Vec<Channel>,
    /// Default `["fail", "warn", "recovered"]`.
    #[serde(default = "default_notify_on")]
    pub notify_on: Vec<NotifyOn>,
    /// After an opening message, a new incident within this long (e.g. `1h`) is recorded but
    /// not sent (nor its resolution). Severity changes of a sent incident are always sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(0s|[1-9][0-9]{0,5}[smhd])$")]
    pub cooldown: Option<String>,
}

fn default_notify_on() -> Vec<NotifyOn> {
    vec![NotifyOn::Fail, NotifyOn::Warn, NotifyOn::Recovered]
}

/// The durations the document states: a whole number of 1–6 digits without a leading zero and a
/// unit (`s`, `m`, `h`, `d`), e.g. `30s`, `15m`, `6h`, `1d`. A schedule (`triggers.every`) is at
/// least 10 s; a cooldown may also be `0s`.
pub const EVERY_PATTERN: &str = "^([1-9][0-9]{0,5}[mhd]|[1-9][0-9]{1,5}s)$";
/// See [`EVERY_PATTERN`].
pub const COOLDOWN_PATTERN: &str = "^(0s|[1-9][0-9]{0,5}[smhd])$";

/// `30s`, `15m`, `6h`, `1d`: 1–6 digits (no leading zero, nothing around them) and a unit. Six
/// digits keep every such schedule within what the database's timestamps can add.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty()
        || digits.len() > 6
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        'd' => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl MonitorSpec {
    pub fn every(&self) -> Option<Duration> {
        self.triggers.every.as_deref().and_then(parse_duration)
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(Duration::ZERO)
    }

    /// Every problem of the definition apart from the rules' own and the destinations'.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let t = &self.target;
        let given = t.alias.is_some() as u8 + t.version.is_some() as u8 + t.latest.is_some() as u8;
        if given != 1 || t.latest == Some(false) {
            errors.push(FieldError::at(
                "/target",
                "give exactly one of alias, version or latest: true",
            ));
        }
        for (p, v) in [("/target/alias", &t.alias), ("/target/version", &t.version)] {
            if let Some(v) = v {
                if let Err(m) = crate::domain::names::Name::parse(v) {
                    errors.push(FieldError::at(p, m));
                }
            }
        }
        if self.gate.is_some() == self.rules.is_some() {
            errors.push(FieldError::at(
                "/gate",
                "give either gate (a stored policy) or rules",
            ));
        }
        if let Some(g) = &self.gate {
            if let Err(m) = crate::domain::names::Name::parse(g) {
                errors.push(FieldError::at("/gate", m));
            }
        }
        if self.window.batches.is_some() && self.window.hours.is_some() {
            errors.push(FieldError::at("/window", "give batches or hours, not both"));
        }
        if let Some(b) = self.window.batches {
            if !(1..=10_000).contains(&b) {
                errors.push(FieldError::at(
                    "/window/batches",
                    "must be between 1 and 10000",
                ));
            }
        }
        if let Some(h) = self.window.hours {
            if !(h.is_finite() && h > 0.0 && h <= 24.0 * 366.0) {
                errors.push(FieldError::at(
                    "/window/hours",
                    "must be a positive number of hours, at most a year",
                ));
            }
        }
        if let Some(e) = &self.triggers.every {
            match parse_duration(e) {
                Some(d) if d >= Duration::from_secs(10) => {}
                Some(_) => errors.push(FieldError::at("/triggers/every", "must be at least 10s")),
                None => errors.push(FieldError::at(
                    "/triggers/every",
                    "a duration such as 30s, 15m, 6h or 1d (1–6 digits and a unit)",
                )),
            }
        }
        if self.triggers.on_alias_change && t.alias.is_none() && !self.triggers.on_result {
            // Only meaningful for an alias; harmless otherwise, but then some trigger must fire.
            if self.triggers.every.is_none() {
                errors.push(FieldError::at(
                    "/triggers",
                    "on_alias_change needs an alias target; enable on_result or every",
                ));
            }
        }
        if !self.triggers.on_result
            && !self.triggers.on_alias_change
            && self.triggers.every.is_none()
        {
            errors.push(FieldError::at("/triggers", "enable at least one trigger"));
        }
        if let Some(c) = &self.cooldown {
            if parse_duration(c).is_none() && c != "0s" {
                errors.push(FieldError::at(
                    "/cooldown",
                    "a duration such as 0s, 30s, 15m, 6h or 1d (1–6 digits and a unit)",
                ));
            }
        }
        if self.channels.len() > 10 {
            errors.push(FieldError::at("/channels", "at most 10 channels"));
        }
        for (i, c) in self.channels.iter().enumerate() {
            if let Err(m) = crate::domain::names::Name::parse(&c.name) {
                errors.push(FieldError::at(format!("/channels/{i}/name"), m));
            }
            if self.channels[..i].iter().any(|o| o.name == c.name) {
                errors.push(FieldError::at(
                    format!("/channels/{i}/name"),
                    "channel names must be unique",
                ));
            }
        }
        errors
    }
}

/// Whether an address is one a webhook may not reach unless private destinations are allowed:
/// loopback, private (RFC 1918, unique local), link-local, shared (CGNAT), unspecified,
/// multicast, broadcast and documentation ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let s = v6.segments();
            let v4_at = |hi: u16, lo: u16| {
                Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            // Addresses that carry an IPv4 address: judged by it. IPv4-compatible ::a.b.c.d
            // (deprecated, but some stacks route it), IPv4-translated ::ffff:0:a.b.c.d, and
            // 6to4 2002:aabb:ccdd::/48.
            if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return internal_v4(v4_at(s[6], s[7]));
            }
            if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
                return internal_v4(v4_at(s[6], s[7]));
            }
            if s[0] == 0x2002 && internal_v4(v4_at(s[1], s[2])) {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0x0000) // Teredo: tunnels to any IPv4 address
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 can reach IPv4 internals
        }
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240
}

/// Check a destination URL: an `http(s)` URL whose host is not internal (by its literal address,
/// its name, or what the name resolves to now) unless `allow_private`. A name that does not
/// resolve now is accepted here; delivery checks again before each attempt.
pub async fn check_destination(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err("the scheme must be http or https".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("credentials in the URL are not allowed".into());
    }
    let Some(host) = u.host_str().map(|h| h.to_string()) else {
        return Err("the URL has no host".into());
    };
    if allow_private {
        return Ok(u);
    }
    let refused = || {
        Err(
            "the destination is a loopback, private or link-local address; such destinations \
             are refused unless the server runs with --webhook-allow-private"
                .to_string(),
        )
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if is_internal(ip) {
            return refused();
        }
    } else {
        let d = bare.trim_end_matches('.').to_ascii_lowercase();
        if d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal") {
            return refused();
        }
        let port = u.port_or_known_default().unwrap_or(443);
        let resolved = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((d.as_str(), port)),
        )
        .await;
        if let Ok(Ok(addrs)) = resolved {
            for a in addrs {
                if is_internal(a.ip()) {
                    return refused();
                }
            }
        }
    }
    Ok(u)
}

/// The resolver webhook deliveries connect through when private destinations are not allowed:
/// internal addresses are dropped from every answer. The check before each attempt resolves the
/// name once and the connection resolves it again; without this, a name that answers a public
/// address to the check and an internal one to the connection (DNS rebinding) would reach an
/// internal service. Literal addresses are not resolved and are refused by the check.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (internal destinations are refused \
                     unless the server runs with --webhook-allow-private)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0m"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(
            parse_duration("999999d"),
            Some(Duration::from_secs(86_399_913_600))
        );
        for bad in [
            " 15m", "15m ", "015m", "1000000s", "1.5h", "+5m", "5 m", "5w", "٣m",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("5w"), None);
        assert_eq!(parse_duration("-5s"), None);
    }

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // IPv4 inside IPv6: compatible, translated, 6to4, Teredo.
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:10.1.2.3",
            "2002:7f00:1::",
            "2002:c0a8:0101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "100::1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "172.32.0.1",
            "2002:0808:0808::1",
        ] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn destinations() {
        assert!(check_destination("http://127.0.0.1:9/x", false)
            .await
            .is_err());
        assert!(check_destination("http://[::1]/x", false).await.is_err());
        for url in [
            "http://[::127.0.0.1]/x",
            "http://[::ffff:0:127.0.0.1]/x",
            "http://[2002:7f00:1::]/x",
        ] {
            assert!(check_destination(url, false).await.is_err(), "{url}");
        }
        assert!(check_destination("http://localhost/x", false)
            .await
            .is_err());
        assert!(check_destination("http://169.254.169.254/latest", false)
            .await
            .is_err());
        assert!(check_destination("ftp://8.8.8.8/x", false).await.is_err());
        assert!(check_destination("http://u:p@8.8.8.8/x", false)
            .await
            .is_err());
        assert!(check_destination("https://8.8.8.8/x", false).await.is_ok());
        assert!(check_destination("http://127.0.0.1:9/x", true)
            .await
            .is_ok());
    }

    /// A name that resolves to an internal address when the connection is made is refused by
    /// the delivery client's resolver, even though nothing checked it first (the rebinding case);
    /// the same request without the resolver reaches the loopback listener.
    #[tokio::test]
    async fn the_delivery_resolver_refuses_internal_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let url = format!("http://localhost:{port}/hook");
        let open = reqwest::Client::builder().no_proxy().build().unwrap();
        assert_eq!(open.post(&url).send().await.unwrap().status(), 200);
        let guarded = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(PublicOnly))
            .build()
            .unwrap();
        let err = guarded.post(&url).send().await.unwrap_err();
        let chain = format!("{err:?}");
        assert!(chain.contains("no public address"), "{chain}");
    }
}
