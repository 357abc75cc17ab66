//! Request bodies held to a pace. While a handler waits for its body, the client must keep
//! sending: a body that sends nothing for `idle`, or whose bytes fall behind `min_rate` per
//! second of waiting (after `grace`), ends with [`BodyTimeout`] (answered 408). Only the time the
//! server spends waiting for the client counts: a handler that is busy (or waits for a lock)
//! before reading more is not the client's delay. So a slow or stalled client cannot hold a
//! connection, a blocking thread or buffered memory for long.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::BodyTimeout;

/// How fast a request body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    /// Longest wait for the next bytes.
    pub idle: Duration,
    /// Waiting time allowed before the rate counts.
    pub grace: Duration,
    /// Least bytes per second of waiting, after `grace` (0: no rate).
    pub min_rate: u64,
}

impl Default for BodyPace {
    fn default() -> Self {
        BodyPace {
            idle: Duration::from_secs(20),
            grace: Duration::from_secs(10),
            min_rate: 1024,
        }
    }
}

/// A request body under a [`BodyPace`].
pub struct PacedBody {
    inner: axum::body::Body,
    pace: BodyPace,
    received: u64,
    /// Waiting time of the waits that ended with bytes.
    waited: Duration,
    /// When the current wait began (`None`: not waiting).
    waiting_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl PacedBody {
    pub fn new(inner: axum::body::Body, pace: BodyPace) -> Self {
        PacedBody {
            inner,
            pace,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// When the current wait (begun at `since`) runs out, and what it breaks.
    fn deadline(&self, since: Instant) -> (Instant, &'static str) {
        let idle = since + self.pace.idle;
        if self.pace.min_rate == 0 {
            return (idle, "idle");
        }
        let allowed = self.pace.grace
            + Duration::from_secs_f64(self.received as f64 / self.pace.min_rate as f64);
        let rate = since + allowed.saturating_sub(self.waited);
        if rate < idle {
            (rate, "rate")
        } else {
            (idle, "idle")
        }
    }
}

impl HttpBody for PacedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(f)) = &frame {
                    if let Some(d) = f.data_ref() {
                        this.received += d.len() as u64;
                    }
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let since = match this.waiting_since {
                    Some(s) => s,
                    None => {
                        let now = Instant::now();
                        this.waiting_since = Some(now);
                        let (at, _) = this.deadline(now);
                        this.timer.as_mut().reset(at);
                        now
                    }
                };
                if this.timer.as_mut().poll(cx).is_ready() {
                    let (_, why) = this.deadline(since);
                    let message = match why {
                        "rate" => format!(
                            "the request body arrived too slowly: {} bytes after {:.0} s of waiting (at least {} bytes per second are needed after the first {} s)",
                            this.received,
                            (this.waited + since.elapsed()).as_secs_f64(),
                            this.pace.min_rate,
                            this.pace.grace.as_secs()
                        ),
                        _ => format!(
                            "the request body stalled: nothing arrived for {} s (after {} bytes)",
                            this.pace.idle.as_secs(),
                            this.received
                        ),
                    };
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(message)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields its chunks with the given pauses between them.
    fn trickle(chunks: Vec<(Duration, &'static [u8])>) -> axum::body::Body {
        let s = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
            let (pause, bytes) = it.next()?;
            tokio::time::sleep(pause).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(bytes)), it))
        });
        axum::body::Body::from_stream(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_after_the_idle_wait() {
        let pace = BodyPace {
            idle: Duration::from_secs(5),
            grace: Duration::from_secs(100),
            min_rate: 0,
        };
        let b = PacedBody::new(
            trickle(vec![
                (Duration::ZERO, b"ab"),
                (Duration::from_secs(4), b"cd"),
                (Duration::from_secs(6), b"ef"),
            ]),
            pace,
        );
        let e = b.collect().await.unwrap_err();
        let t = crate::error::body_timeout_in(&e).expect("a body timeout");
        assert!(t.0.contains("stalled"), "{t}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_rate_ends_and_a_steady_body_does_not() {
        let pace = BodyPace {
            idle: Duration::from_secs(20),
            grace: Duration::from_secs(10),
            min_rate: 100,
        };
        // One byte every 5 s: never idle for 20 s, far below 100 bytes per second.
        let slow: Vec<_> = (0..20)
            .map(|_| (Duration::from_secs(5), &b"x"[..]))
            .collect();
        let started = Instant::now();
        let e = PacedBody::new(trickle(slow), pace)
            .collect()
            .await
            .unwrap_err();
        let t = crate::error::body_timeout_in(&e).expect("a body timeout");
        assert!(t.0.contains("too slowly"), "{t}");
        assert!(
            started.elapsed() <= Duration::from_secs(11),
            "{:?}",
            started.elapsed()
        );
        // 1000 bytes per second for 30 s: well above the rate.
        let steady: Vec<_> = (0..30)
            .map(|_| (Duration::from_secs(1), &[b'y'; 1000][..]))
            .collect();
        let body = PacedBody::new(trickle(steady), pace)
            .collect()
            .await
            .unwrap();
        assert_eq!(body.to_bytes().len(), 30_000);
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_handler_spends_elsewhere_is_not_the_clients() {
        let pace = BodyPace {
            idle: Duration::from_secs(5),
            grace: Duration::from_secs(5),
            min_rate: 1000,
        };
        let mut b = PacedBody::new(
            trickle(vec![(Duration::ZERO, b"ab"), (Duration::ZERO, b"cd")]),
            pace,
        );
        let first = b.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        // The handler is busy for a minute; the client's bytes are already there.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let second = b.frame().await.unwrap().unwrap();
        assert_eq!(second.into_data().unwrap(), "cd");
    }
}
