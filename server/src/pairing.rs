//! The pairing mailbox (PROTOCOL §3.6): a new device leaves an offer for a
//! user, the user's identity holder reads it and leaves an answer, the new
//! device takes the answer. The server cannot read either (they are tagged
//! under a code it never sees); it only keeps them, in memory, for
//! [`TTL`]. Bounded: [`PER_USER`] offers per user (the oldest goes), and
//! [`TOTAL`] in all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amicus_core::UserId;

use crate::error::ApiError;

/// How long an offer (and its answer) is kept.
pub const TTL: Duration = Duration::from_secs(600);
/// Live offers per user; a new one pushes out the oldest.
pub const PER_USER: usize = 8;
/// Live offers in all.
pub const TOTAL: usize = 10_000;
/// Largest offer, in bytes.
pub const MAX_OFFER: usize = 1024;
/// Largest answer, in bytes.
pub const MAX_ANSWER: usize = 4096;

struct Slot {
    user: UserId,
    offer: Vec<u8>,
    answer: Option<Vec<u8>>,
    created: Instant,
}

/// The offers and answers in flight.
#[derive(Default)]
pub struct Pairings {
    slots: HashMap<[u8; 16], Slot>,
}

impl Pairings {
    fn prune(&mut self) {
        self.slots.retain(|_, s| s.created.elapsed() < TTL);
    }

    /// Keeps an offer for `user`; returns its id (the new device's handle
    /// on the answer).
    pub fn offer(&mut self, user: UserId, offer: Vec<u8>) -> Result<[u8; 16], ApiError> {
        self.prune();
        let mut mine: Vec<([u8; 16], Instant)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.user == user)
            .map(|(id, s)| (*id, s.created))
            .collect();
        if mine.len() >= PER_USER {
            mine.sort_by_key(|(_, created)| *created);
            for (id, _) in &mine[..=mine.len() - PER_USER] {
                self.slots.remove(id);
            }
        }
        if self.slots.len() >= TOTAL {
            return Err(ApiError::RateLimited(60_000));
        }
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
                "no such pairing offer (it expired or was pushed out by newer ones): make a new one".into(),
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
        let id = p.offer(user("amina"), b"offer".to_vec()).unwrap();
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
    fn a_flood_of_offers_pushes_out_only_that_users_oldest() {
        let mut p = Pairings::default();
        let bruno = p.offer(user("bruno"), b"b".to_vec()).unwrap();
        let first = p.offer(user("amina"), b"0".to_vec()).unwrap();
        for i in 1..=PER_USER {
            p.offer(user("amina"), vec![i as u8]).unwrap();
        }
        let listed = p.offers_for(&user("amina"));
        assert_eq!(listed.len(), PER_USER);
        assert!(listed.iter().all(|(id, _)| *id != first));
        assert!(matches!(p.take_answer(first), Err(ApiError::NotFound(_))));
        assert_eq!(p.take_answer(bruno).unwrap(), None);
    }
}
