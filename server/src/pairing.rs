//! The pairing mailbox (PROTOCOL §3.6): the identity holder opens a
//! *channel* (an id derived from the pairing code it shows), a new device
//! leaves one offer on that channel, the identity holder reads it and
//! leaves an answer, the new device takes the answer. The server cannot
//! read or forge either (they are tagged under the code, which it never
//! sees), and it keeps only offers on channels the user opened, so someone
//! who knows only the user name cannot push a genuine offer out. Everything
//! lives in memory for [`TTL`]; bounded per user and in all ([`TOTAL`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amicus_core::UserId;

use crate::error::ApiError;

/// How long a channel, an offer and its answer are kept.
pub const TTL: Duration = Duration::from_secs(600);
/// Open channels per user; opening another closes the oldest.
pub const OPEN_PER_USER: usize = 4;
/// Offers kept per user (answered or not): one user cannot fill the
/// mailbox for everyone.
pub const OFFERS_PER_USER: usize = 8;
/// Channels and offers in all.
pub const TOTAL: usize = 10_000;
/// Largest offer, in bytes.
pub const MAX_OFFER: usize = 1024;
/// Largest answer, in bytes.
pub const MAX_ANSWER: usize = 4096;

struct Channel {
    user: UserId,
    created: Instant,
    /// Order of opening (instants may tie).
    seq: u64,
}

struct Slot {
    user: UserId,
    offer: Vec<u8>,
    answer: Option<Vec<u8>>,
    created: Instant,
}

/// The channels, offers and answers in flight.
#[derive(Default)]
pub struct Pairings {
    channels: HashMap<[u8; 16], Channel>,
    slots: HashMap<[u8; 16], Slot>,
    opened: u64,
}

impl Pairings {
    fn prune(&mut self) {
        self.channels.retain(|_, c| c.created.elapsed() < TTL);
        self.slots.retain(|_, s| s.created.elapsed() < TTL);
    }

    fn full(&self) -> bool {
        self.channels.len() + self.slots.len() >= TOTAL
    }

    /// Opens `channel` for one offer to `user` (called by a device of that
    /// user, which shows the code the channel is derived from).
    pub fn open(&mut self, user: UserId, channel: [u8; 16]) -> Result<(), ApiError> {
        self.prune();
        if self.channels.get(&channel).is_some_and(|c| c.user != user) {
            return Err(ApiError::Conflict(
                "this pairing channel is taken: show a new code".into(),
            ));
        }
        if self.slots.values().filter(|s| s.user == user).count() >= OFFERS_PER_USER {
            return Err(ApiError::RateLimited(60_000));
        }
        let mut mine: Vec<([u8; 16], u64)> = self
            .channels
            .iter()
            .filter(|(id, c)| c.user == user && **id != channel)
            .map(|(id, c)| (*id, c.seq))
            .collect();
        if mine.len() >= OPEN_PER_USER {
            mine.sort_by_key(|(_, seq)| *seq);
            for (id, _) in &mine[..=mine.len() - OPEN_PER_USER] {
                self.channels.remove(id);
            }
        }
        if self.full() {
            return Err(ApiError::RateLimited(60_000));
        }
        self.opened += 1;
        self.channels.insert(
            channel,
            Channel {
                user,
                created: Instant::now(),
                seq: self.opened,
            },
        );
        Ok(())
    }

    /// Keeps an offer for `user` on `channel`, which `user` must have
    /// opened; the channel then closes (one offer per code). Returns the
    /// offer's id (the new device's handle on the answer).
    pub fn offer(
        &mut self,
        user: UserId,
        channel: [u8; 16],
        offer: Vec<u8>,
    ) -> Result<[u8; 16], ApiError> {
        self.prune();
        if self.channels.get(&channel).is_none_or(|c| c.user != user) {
            return Err(ApiError::NotFound(
                "no pairing is waiting for this code and user: check both, or show a new code on your other browser".into(),
            ));
        }
        if self.slots.len() >= TOTAL {
            return Err(ApiError::RateLimited(60_000));
        }
        self.channels.remove(&channel);
        let mut id = [0u8; 16];
        id.copy_from_slice(&crate::state::random32()[..16]);
        self.slots.insert(
            id,
            Slot {
                user,
                offer,
                answer: None,
                created: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The unanswered offers for `user`, oldest first.
    pub fn offers_for(&mut self, user: &UserId) -> Vec<([u8; 16], Vec<u8>)> {
        self.prune();
        let mut out: Vec<(Instant, [u8; 16], Vec<u8>)> = self
            .slots
            .iter()
            .filter(|(_, s)| &s.user == user && s.answer.is_none())
            .map(|(id, s)| (s.created, *id, s.offer.clone()))
            .collect();
        out.sort_by_key(|(created, _, _)| *created);
        out.into_iter().map(|(_, id, o)| (id, o)).collect()
    }

    /// Leaves `user`'s answer to the offer `id`.
    pub fn answer(&mut self, user: &UserId, id: [u8; 16], answer: Vec<u8>) -> Result<(), ApiError> {
        self.prune();
        match self.slots.get_mut(&id) {
            Some(s) if &s.user == user => {
                if s.answer.is_some() {
                    return Err(ApiError::Conflict("this offer is answered already".into()));
                }
                s.answer = Some(answer);
                Ok(())
            }
            _ => Err(ApiError::NotFound(
                "no such pairing offer for your user (it may have expired)".into(),
            )),
        }
    }

    /// The answer to offer `id`, if any yet; a delivered answer is
    /// forgotten with its offer.
    pub fn take_answer(&mut self, id: [u8; 16]) -> Result<Option<Vec<u8>>, ApiError> {
        self.prune();
        let Some(slot) = self.slots.get(&id) else {
            return Err(ApiError::NotFound(
                "no such pairing offer (it expired): make a new one".into(),
            ));
        };
        if slot.answer.is_none() {
            return Ok(None);
        }
        Ok(self.slots.remove(&id).and_then(|s| s.answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    #[test]
    fn an_answer_reaches_the_offer_once_and_only_from_its_user() {
        let mut p = Pairings::default();
        p.open(user("amina"), [1; 16]).unwrap();
        let id = p.offer(user("amina"), [1; 16], b"offer".to_vec()).unwrap();
        assert_eq!(p.offers_for(&user("amina")), vec![(id, b"offer".to_vec())]);
        assert!(p.offers_for(&user("bruno")).is_empty());
        assert_eq!(p.take_answer(id).unwrap(), None);
        assert!(matches!(
            p.answer(&user("bruno"), id, b"x".to_vec()),
            Err(ApiError::NotFound(_))
        ));
        p.answer(&user("amina"), id, b"answer".to_vec()).unwrap();
        assert!(matches!(
            p.answer(&user("amina"), id, b"again".to_vec()),
            Err(ApiError::Conflict(_))
        ));
        assert!(
            p.offers_for(&user("amina")).is_empty(),
            "answered offers are not listed"
        );
        assert_eq!(p.take_answer(id).unwrap(), Some(b"answer".to_vec()));
        assert!(matches!(p.take_answer(id), Err(ApiError::NotFound(_))));
    }

    #[test]
    fn only_offers_on_a_channel_the_user_opened_are_kept_one_per_channel() {
        let mut p = Pairings::default();
        // Someone who knows only the name: no channel, nothing kept.
        for channel in [[0; 16], [9; 16]] {
            assert!(matches!(
                p.offer(user("amina"), channel, b"flood".to_vec()),
                Err(ApiError::NotFound(_))
            ));
        }
        p.open(user("amina"), [1; 16]).unwrap();
        // Another user's name on Amina's channel: refused, the channel stays.
        assert!(matches!(
            p.offer(user("bruno"), [1; 16], b"x".to_vec()),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            p.open(user("bruno"), [1; 16]),
            Err(ApiError::Conflict(_))
        ));
        let id = p
            .offer(user("amina"), [1; 16], b"genuine".to_vec())
            .unwrap();
        // The channel took its one offer.
        assert!(matches!(
            p.offer(user("amina"), [1; 16], b"second".to_vec()),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(
            p.offers_for(&user("amina")),
            vec![(id, b"genuine".to_vec())]
        );
        // Opening more channels than allowed closes the oldest.
        for i in 2..=(OPEN_PER_USER as u8 + 2) {
            p.open(user("amina"), [i; 16]).unwrap();
        }
        assert!(matches!(
            p.offer(user("amina"), [2; 16], b"late".to_vec()),
            Err(ApiError::NotFound(_))
        ));
        p.offer(
            user("amina"),
            [OPEN_PER_USER as u8 + 2; 16],
            b"new".to_vec(),
        )
        .unwrap();
        // One user cannot fill the mailbox: past its offers, no channel.
        for i in 0..(OFFERS_PER_USER - 2) as u8 {
            p.open(user("amina"), [100 + i; 16]).unwrap();
            p.offer(user("amina"), [100 + i; 16], b"more".to_vec())
                .unwrap();
        }
        assert!(matches!(
            p.open(user("amina"), [200; 16]),
            Err(ApiError::RateLimited(_))
        ));
        p.open(user("bruno"), [201; 16]).unwrap();
    }
}
