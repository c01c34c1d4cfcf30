//! One WebSocket per client: binary frames in the versioned format of
//! `amicus_core::wire`. The handler only upgrades; [`connection`] is a plain
//! async function.
//!
//! Close codes: 1001 server shutting down, 1003 text frame, 1008 undecodable
//! frame, 4000 idle, 4003 device revoked, 4008 too slow (send queue full), 4029 too many
//! connections for this device. A peer whose queue overflows while the
//! server is blocked writing to it (it stopped reading) is dropped without a
//! close frame, which could not get through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use amicus_core::wire::{ClientFrame, RefusalCode, ServerFrame, WireError};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};

use crate::relay::{Appended, Inbox, Outbox, Refusal, Relay};
use crate::state::{AppState, Caller};

/// Close code: the connection was idle too long.
pub const CLOSE_IDLE: u16 = 4000;
/// Close code: the device was revoked by its user.
pub const CLOSE_REVOKED: u16 = 4003;
/// Close code: the client did not read fast enough.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code: the device has too many connections.
pub const CLOSE_TOO_MANY: u16 = 4029;

async fn close(
    socket: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    code: u16,
    reason: &str,
) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Serves one authenticated connection until it closes.
pub async fn connection(state: Arc<AppState>, socket: WebSocket, caller: Caller) {
    let (mut sink, mut stream) = socket.split();
    let Some((outbox, inbox)) = state.relay.connect(caller.device) else {
        close(
            &mut sink,
            CLOSE_TOO_MANY,
            "too many connections for this device",
        )
        .await;
        return;
    };
    state.metrics.connections.fetch_add(1, Ordering::Relaxed);
    tracing::info!(device = %caller.device, "connected");
    // Dropped when the connection ends, also by a panic of this task: the
    // user is no longer counted online, the relay forgets the connection.
    let _online = state.notifier.online(&caller.user);
    let _registered = Registered {
        state: &state,
        outbox: &outbox,
    };
    run(&state, &caller, &outbox, inbox, &mut sink, &mut stream).await;
    tracing::info!(device = %caller.device, "disconnected");
}

/// A connection the relay and the metrics count, until dropped.
struct Registered<'a> {
    state: &'a AppState,
    outbox: &'a crate::relay::Outbox,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.state.relay.disconnect(self.outbox);
        self.state
            .metrics
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

async fn send(state: &AppState, sink: &mut Sink, frame: Vec<u8>) -> bool {
    // A peer that does not read within the idle timeout is gone.
    matches!(
        tokio::time::timeout(
            state.config.limits.idle_timeout(),
            sink.send(Message::Binary(frame.into()))
        )
        .await,
        Ok(Ok(()))
    )
}

/// Appends one connection may have waiting for their answers, and their
/// bytes; past either, the connection's next frames wait.
const MAX_APPENDS_IN_FLIGHT: usize = 32;
const MAX_BYTES_IN_FLIGHT: usize = 32 << 20;

/// An append's answer and the size of its frame.
type Answer = Pin<Box<dyn Future<Output = (ServerFrame, usize)> + Send>>;

/// The appends of one connection awaiting their answers, in the order
/// sent, and the bytes of their frames.
#[derive(Default)]
struct Answers {
    waiting: FuturesOrdered<Answer>,
    bytes: usize,
}

impl Answers {
    fn push(&mut self, size: usize, answer: impl Future<Output = ServerFrame> + Send + 'static) {
        self.bytes += size;
        self.waiting
            .push_back(Box::pin(async move { (answer.await, size) }));
    }

    /// The next answer, in the order the appends were sent.
    async fn next(&mut self) -> Option<ServerFrame> {
        let (answer, size) = self.waiting.next().await?;
        self.bytes -= size;
        Some(answer)
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn full(&self) -> bool {
        self.waiting.len() >= MAX_APPENDS_IN_FLIGHT || self.bytes >= MAX_BYTES_IN_FLIGHT
    }
}

async fn run(
    state: &Arc<AppState>,
    caller: &Caller,
    outbox: &Outbox,
    mut inbox: Inbox,
    sink: &mut Sink,
    stream: &mut Stream,
) {
    let idle = state.config.limits.idle_timeout();
    let mut answers = Answers::default();
    loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => {
                close(sink, 1001, "server shutting down").await;
                return;
            }
            () = inbox.revoked.notified() => {
                tracing::info!(device = %caller.device, "closing a revoked device's connection");
                close(sink, CLOSE_REVOKED, "this device was revoked by its user").await;
                return;
            }
            () = inbox.overflow.1.notified() => {
                if inbox.overflow.0.load(Ordering::SeqCst) {
                    state.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(device = %caller.device, "closing a connection that reads too slowly");
                    close(sink, CLOSE_TOO_SLOW, "too slow: the send queue is full; reconnect and catch up").await;
                    return;
                }
            }
            out = inbox.rx.recv() => {
                let Some(frame) = out else { return };
                inbox.queued_bytes.fetch_sub(frame.len(), Ordering::SeqCst);
                tokio::select! {
                    sent = send(state, sink, frame.as_ref().clone()) => {
                        if !sent {
                            return;
                        }
                    }
                    () = inbox.overflow.1.notified() => {
                        // Blocked on a peer that does not read while its
                        // queue overflowed: drop the connection at once
                        // (no close frame can get through).
                        state.metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(device = %caller.device, "dropping a connection whose reader is stalled");
                        return;
                    }
                }
            }
            Some(answer) = answers.next(), if !answers.is_empty() => {
                if !send(state, sink, answer.encode()).await {
                    return;
                }
            }
            incoming = tokio::time::timeout(idle, stream.next()), if !answers.full() => {
                let message = match incoming {
                    Err(_) => {
                        close(sink, CLOSE_IDLE, "idle: send a Ping at least every minute").await;
                        return;
                    }
                    Ok(None | Some(Err(_))) => return,
                    Ok(Some(Ok(m))) => m,
                };
                match message {
                    Message::Binary(bytes) => {
                        let frame = match ClientFrame::decode(&bytes) {
                            Ok(f) => f,
                            Err(e) => {
                                let reason = match e {
                                    WireError::UnknownVersion(_) => "unknown frame version; upgrade the client",
                                    WireError::TooLarge(_) => "frame too large",
                                    _ => "malformed frame",
                                };
                                close(sink, 1008, reason).await;
                                return;
                            }
                        };
                        if !handle(state, caller, outbox, frame, bytes.len(), sink, &mut answers).await {
                            return;
                        }
                    }
                    Message::Text(_) => {
                        close(sink, 1003, "this endpoint speaks binary frames only").await;
                        return;
                    }
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    }
}

/// Handles one client frame of `size` bytes; false if the connection must
/// end. An append joins its space's queue at once and its answer goes out
/// when ready, after the answers of the connection's earlier appends.
async fn handle(
    state: &Arc<AppState>,
    caller: &Caller,
    outbox: &Outbox,
    frame: ClientFrame,
    size: usize,
    sink: &mut Sink,
    answers: &mut Answers,
) -> bool {
    match frame {
        ClientFrame::Ping => send(state, sink, ServerFrame::Pong.encode()).await,
        ClientFrame::Subscribe {
            request,
            space,
            from_seq,
        } => {
            let record = match state.relay.subscribe(state, caller, outbox, space).await {
                Ok(r) => r,
                Err(r) => {
                    let refused = ServerFrame::Refused {
                        request,
                        code: r.code,
                        message: r.message,
                    };
                    return send(state, sink, refused.encode()).await;
                }
            };
            let page = state.config.limits.catch_up_page.max(1);
            let mut next = from_seq;
            while next < record.next_seq {
                let store = state.store.clone();
                let entries =
                    tokio::task::spawn_blocking(move || store.entries(space, next, page, 8 << 20))
                        .await;
                let Ok(Ok(entries)) = entries else {
                    tracing::error!(space = %space, "catch-up read failed");
                    return false;
                };
                if entries.is_empty() {
                    break;
                }
                for entry in entries {
                    if entry.seq >= record.next_seq {
                        break;
                    }
                    next = entry.seq + 1;
                    if !send(state, sink, ServerFrame::Entry { space, entry }.encode()).await {
                        return false;
                    }
                    state
                        .metrics
                        .log_entries_served
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            let synced = ServerFrame::Synced {
                space,
                next_seq: record.next_seq,
                head: record.head,
                epoch: record.epoch,
            };
            send(state, sink, synced.encode()).await
        }
        ClientFrame::Append {
            request,
            space,
            item,
        } => {
            if let Some(limited) = rate_limited(state, caller, request) {
                return send(state, sink, limited.encode()).await;
            }
            let answer = Relay::append(state, caller, Some(outbox.id), space, item);
            let state = state.clone();
            answers.push(size, async move {
                match answer.await {
                    Ok(Appended::Logged { seq, hash }) => {
                        ServerFrame::Accepted { request, seq, hash }
                    }
                    Ok(Appended::Relayed { next_seq, head }) => ServerFrame::Accepted {
                        request,
                        seq: next_seq,
                        hash: head,
                    },
                    Err(r) => refused(&state, request, r),
                }
            });
            true
        }
        ClientFrame::Report {
            request,
            space,
            commit,
        } => {
            let answer = if let Some(limited) = rate_limited(state, caller, request) {
                limited
            } else {
                match state.relay.report(state, caller, space, commit).await {
                    Ok(r) => ServerFrame::Reported {
                        request,
                        reopened: r.reopened,
                        reports: r.reports,
                        needed: r.needed,
                    },
                    Err(r) => refused(state, request, r),
                }
            };
            send(state, sink, answer.encode()).await
        }
    }
}

/// The refusal of a device over its rate limit, if it is.
fn rate_limited(state: &AppState, caller: &Caller, request: u32) -> Option<ServerFrame> {
    let ms = state.rate(caller.device).err()?;
    Some(ServerFrame::Refused {
        request,
        code: RefusalCode::RateLimited { retry_after_ms: ms },
        message: format!("too many requests; retry after {ms} ms"),
    })
}

/// A refusal as sent to the client, counted.
fn refused(state: &AppState, request: u32, r: Refusal) -> ServerFrame {
    state.metrics.refusals.fetch_add(1, Ordering::Relaxed);
    ServerFrame::Refused {
        request,
        code: r.code,
        message: r.message,
    }
}
