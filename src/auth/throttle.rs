//! Throttling of password guessing and of password hashing: what stands between the login and
//! sign-up routes and someone trying passwords, or trying to exhaust memory with argon2id
//! (19 MiB and tens of milliseconds of CPU per hash).
//!
//! Three checks, cheapest first:
//! - **per client** (the peer address; an IPv6 address counts by its /64, which one host
//!   usually holds whole): a governor token bucket over every attempt;
//! - **per account** (the normalised e-mail, held only as a keyed hash): the first
//!   `account_free_attempts` attempts in a row pass, each later one waits a backoff that
//!   doubles up to `account_max_backoff_secs`. An attempt counts when it starts, so a burst
//!   of parallel guesses is cut off like a sequence; a success clears the count. Unknown
//!   e-mails are counted exactly like known ones, so neither the limit that answers nor its
//!   timing says whether an account exists;
//! - **hashing slots** ([`Hashing`]): a semaphore sized to the CPUs, with a short queue;
//!   beyond, 503 at once instead of hundreds of hashes in flight.
//!
//! The trade-off for the account's owner: a short maximum backoff means that someone
//! hammering an account can delay its owner by at most that much at a time, and an address
//! that logged in to the account within `known_address_days` passes its backoff (kept in
//! memory, per instance), so the owner's usual address is not held up at all. The price is
//! that a guesser with many addresses gets one guess per maximum backoff per account.
//!
//! Memory stays bounded: client buckets are swept when full again, account entries are only
//! made by attempts that got a hashing slot (so at most the hashing rate), keyed by a 64-bit
//! hash, and swept when forgotten ([`Throttle::sweep`], every minute).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AuthConfig;

/// Where a per-client limit counts an attempt: the peer address, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<IpAddr>);

impl ClientKey {
    /// The key of a peer address (`None`: not over TCP; all such clients share one key).
    pub fn of(addr: Option<IpAddr>) -> Self {
        Self(addr.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(bits.into())
                }
            },
            v4 => v4,
        }))
    }
}

/// What an attempt is: logging in and signing up are counted apart, so that sign-ups for an
/// e-mail cannot slow down its owner's logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login,
    Signup,
}

/// Why an attempt was refused, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client's limit (429).
    Client(Duration),
    /// The account's backoff (429).
    Account(Duration),
    /// Every hashing slot busy and the queue full (503).
    Busy,
}

impl Refusal {
    /// The answer to the client.
    pub(crate) fn to_api_error(self) -> crate::error::ApiError {
        use crate::error::{ApiError, ErrorCode};
        match self {
            Self::Client(wait) | Self::Account(wait) => {
                // Whole seconds, rounded up: a client waiting that long is let through.
                let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many attempts; try again in {secs} s"),
                )
                .retry_after(secs)
            }
            Self::Busy => ApiError::new(
                ErrorCode::Busy,
                "the server is checking as many passwords as it can right now; retry in a moment",
            )
            .retry_after(1),
        }
    }
}

type Keyed = RateLimiter<ClientKey, DefaultKeyedStateStore<ClientKey>, DefaultClock>;

/// One account's recent attempts.
#[derive(Debug)]
struct Account {
    /// Attempts in a row since the last success (counted when they start).
    attempts: u32,
    /// Refused until then.
    blocked_until: Option<Instant>,
    last_attempt: Instant,
    /// Addresses that logged in successfully, and when (at most [`KNOWN_PER_ACCOUNT`]).
    known: Vec<(ClientKey, Instant)>,
}

/// Known addresses kept per account; the oldest is replaced.
const KNOWN_PER_ACCOUNT: usize = 4;

/// Refusals counted since start, by limit (for `/metrics`).
#[derive(Debug, Default)]
pub struct Refused {
    pub client: AtomicU64,
    pub account: AtomicU64,
    pub busy: AtomicU64,
}

/// The login and sign-up throttle of one server.
#[derive(Debug)]
pub struct Throttle {
    clients: Option<Keyed>,
    clock: DefaultClock,
    accounts: Mutex<HashMap<u64, Account>>,
    /// Keys the account hash, so that nobody can aim e-mails at one bucket.
    hasher: std::collections::hash_map::RandomState,
    free_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    forget: Duration,
    known_for: Duration,
    pub hashing: Hashing,
    pub refused: Refused,
}

impl Throttle {
    pub fn new(config: &AuthConfig) -> Self {
        let clients = NonZeroU32::new(config.client_burst).map(|burst| {
            let per_minute = NonZeroU32::new(config.client_per_minute).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
        });
        let hash_slots = match config.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self {
            clients,
            clock: DefaultClock::default(),
            accounts: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
            free_attempts: config.account_free_attempts,
            backoff: Duration::from_secs(config.account_backoff_secs),
            max_backoff: Duration::from_secs(config.account_max_backoff_secs),
            forget: Duration::from_secs(config.account_forget_secs),
            known_for: Duration::from_secs(config.known_address_days.saturating_mul(86_400)),
            hashing: Hashing::new(hash_slots, config.hash_queue),
            refused: Refused::default(),
        }
    }

    /// The client's limit: takes one attempt from its bucket, or says how long to wait.
    pub fn admit_client(&self, client: ClientKey) -> Result<(), Refusal> {
        let Some(limiter) = &self.clients else {
            return Ok(());
        };
        limiter.check_key(&client).map_err(|not_until| {
            self.refused.client.fetch_add(1, Ordering::Relaxed);
            Refusal::Client(not_until.wait_time_from(self.clock.now()))
        })
    }

    /// The account's limit: counts an attempt on `email` by `client`, or says how long to
    /// wait. Call it holding a hashing slot (see the module's note on memory).
    pub fn admit_account(
        &self,
        purpose: Purpose,
        email: &str,
        client: ClientKey,
    ) -> Result<AccountKey, Refusal> {
        let key = self.account_key(purpose, email);
        if self.max_backoff.is_zero() {
            return Ok(key);
        }
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let account = accounts.entry(key.0).or_insert_with(|| Account {
            attempts: 0,
            blocked_until: None,
            last_attempt: now,
            known: Vec::new(),
        });
        if now.duration_since(account.last_attempt) >= self.forget {
            account.attempts = 0;
            account.blocked_until = None;
        }
        account.last_attempt = now;
        if account
            .known
            .iter()
            .any(|(k, at)| *k == client && now.duration_since(*at) < self.known_for)
        {
            return Ok(key);
        }
        if let Some(until) = account.blocked_until
            && until > now
        {
            self.refused.account.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Account(until - now));
        }
        account.attempts = account.attempts.saturating_add(1);
        if account.attempts >= self.free_attempts {
            let doublings = (account.attempts - self.free_attempts).min(20);
            let wait = self
                .backoff
                .saturating_mul(1 << doublings)
                .min(self.max_backoff);
            account.blocked_until = Some(now + wait);
        }
        Ok(key)
    }

    /// Every check of one attempt on `email` by `client`, cheapest first: the client's limit,
    /// a hashing slot (refused at once when the queue is full), the account's backoff (only
    /// then, so that a refused or queued request costs the account nothing). The slot to
    /// hash in, and the account's key to report a success with.
    pub async fn admit(
        &self,
        purpose: Purpose,
        email: &str,
        client: ClientKey,
    ) -> Result<(Slot, AccountKey), Refusal> {
        self.admit_client(client)?;
        let slot = self.hashing.reserve().await.inspect_err(|_| {
            self.refused.busy.fetch_add(1, Ordering::Relaxed);
        })?;
        let key = self.admit_account(purpose, email, client)?;
        Ok((slot, key))
    }

    /// A successful login (or sign-up): clears the account's count, and for a login
    /// remembers `client` as an address its owner uses.
    pub fn succeeded(&self, key: AccountKey, client: ClientKey) {
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(account) = accounts.get_mut(&key.0) else {
            return;
        };
        account.attempts = 0;
        account.blocked_until = None;
        if self.known_for.is_zero() || key.1 != Purpose::Login {
            return;
        }
        account.known.retain(|(k, _)| *k != client);
        if account.known.len() >= KNOWN_PER_ACCOUNT {
            account.known.remove(0);
        }
        account.known.push((client, now));
    }

    fn account_key(&self, purpose: Purpose, email: &str) -> AccountKey {
        // Each character by its simple lower-case mapping, as PostgreSQL's `lower()` folds it
        // under a UTF-8 character type: `İ` (U+0130) is `i` there, where `str::to_lowercase`
        // makes it `i` and a combining dot — a second key for the same account.
        let normalised: String = email
            .trim()
            .chars()
            .map(|c| c.to_lowercase().next().unwrap_or(c))
            .collect();
        AccountKey(self.hasher.hash_one((purpose as u8, normalised)), purpose)
    }

    /// Forgets what no longer limits anyone: full client buckets, accounts without recent
    /// attempts or known addresses.
    pub fn sweep(&self) {
        if let Some(limiter) = &self.clients {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.retain(|_, account| {
            account
                .known
                .retain(|(_, at)| now.duration_since(*at) < self.known_for);
            let blocked = account.blocked_until.is_some_and(|until| until > now);
            blocked
                || now.duration_since(account.last_attempt) < self.forget
                || !account.known.is_empty()
        });
        accounts.shrink_to_fit();
    }

    /// Entries held: client buckets and accounts.
    pub fn tracked(&self) -> (usize, usize) {
        let clients = self.clients.as_ref().map_or(0, RateLimiter::len);
        let accounts = self
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        (clients, accounts)
    }
}

/// An account's entry in the throttle (a keyed hash of its normalised e-mail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountKey(u64, Purpose);

/// The password-hashing slots: at most `slots` hashes run at once, on tokio's blocking
/// threads; up to `queue` requests wait for one; the others are refused at once.
#[derive(Debug)]
pub struct Hashing {
    semaphore: Arc<Semaphore>,
    slots: usize,
    queue: usize,
    waiting: AtomicUsize,
    counts: Arc<HashCounts>,
}

/// What the hashing slots have done, for `/metrics`.
#[derive(Debug, Default)]
pub struct HashCounts {
    /// Hashes running now.
    pub running: AtomicUsize,
    /// The most that ever ran at once.
    pub peak: AtomicUsize,
    /// Hashes finished.
    pub done: AtomicU64,
}

impl Hashing {
    pub fn new(slots: usize, queue: usize) -> Self {
        let slots = slots.max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(slots)),
            slots,
            queue,
            waiting: AtomicUsize::new(0),
            counts: Arc::default(),
        }
    }

    /// A slot: at once when one is free, after a wait when the queue has room, else
    /// [`Refusal::Busy`].
    pub async fn reserve(&self) -> Result<Slot, Refusal> {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        let queued = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.queue).then_some(w + 1)
            });
        if queued.is_err() {
            return Err(Refusal::Busy);
        }
        /// Leaves the queue even when the request is dropped while waiting.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _leave = Leave(&self.waiting);
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Refusal::Busy)?;
        Ok(self.slot(permit))
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            permit,
            counts: self.counts.clone(),
        }
    }

    /// Slots in all.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn counts(&self) -> &HashCounts {
        &self.counts
    }
}

/// A reserved hashing slot.
#[derive(Debug)]
pub struct Slot {
    permit: OwnedSemaphorePermit,
    counts: Arc<HashCounts>,
}

impl Slot {
    /// Runs `work` (hashing) on a blocking thread. The slot is held until `work` ends, even
    /// if the request is dropped meanwhile: a client that disconnects cannot free a slot
    /// whose hash is still running.
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let Self { permit, counts } = self;
        tokio::task::spawn_blocking(move || {
            let now = counts.running.fetch_add(1, Ordering::AcqRel) + 1;
            counts.peak.fetch_max(now, Ordering::AcqRel);
            let out = work();
            counts.running.fetch_sub(1, Ordering::AcqRel);
            counts.done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            out
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            client_burst: 3,
            client_per_minute: 1,
            account_free_attempts: 2,
            account_backoff_secs: 10,
            account_max_backoff_secs: 40,
            ..AuthConfig::default()
        }
    }

    fn addr(s: &str) -> ClientKey {
        ClientKey::of(Some(s.parse().unwrap()))
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        assert_eq!(addr("2001:db8::1"), addr("2001:db8::ffff:1"));
        assert_ne!(addr("2001:db8::1"), addr("2001:db8:0:1::1"));
        assert_eq!(addr("::ffff:10.0.0.1"), addr("10.0.0.1"));
    }

    #[test]
    fn a_client_over_its_burst_is_refused_with_a_wait() {
        let throttle = Throttle::new(&config());
        let a = addr("10.0.0.1");
        for _ in 0..3 {
            throttle.admit_client(a).unwrap();
        }
        let Err(Refusal::Client(wait)) = throttle.admit_client(a) else {
            panic!("the fourth attempt is refused");
        };
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        throttle.admit_client(addr("10.0.0.2")).unwrap();
    }

    #[test]
    fn an_account_backs_off_doubling_and_a_success_clears_it() {
        let throttle = Throttle::new(&config());
        let a = addr("10.0.0.1");
        throttle
            .admit_account(Purpose::Login, "Ada@Example.com ", a)
            .unwrap();
        let key = throttle
            .admit_account(Purpose::Login, "ada@example.com", a)
            .unwrap();
        let Err(Refusal::Account(wait)) =
            throttle.admit_account(Purpose::Login, "ada@example.com", addr("10.9.9.9"))
        else {
            panic!("the third attempt in a row waits");
        };
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(9));
        // Sign-ups for the e-mail are counted apart.
        throttle
            .admit_account(Purpose::Signup, "ada@example.com", a)
            .unwrap();
        throttle.succeeded(key, a);
        throttle
            .admit_account(Purpose::Login, "ada@example.com", addr("10.9.9.9"))
            .unwrap();
        // The address that logged in passes a backoff others are held by.
        throttle
            .admit_account(Purpose::Login, "ada@example.com", addr("10.9.9.9"))
            .unwrap();
        assert!(
            throttle
                .admit_account(Purpose::Login, "ada@example.com", addr("10.9.9.9"))
                .is_err()
        );
        throttle
            .admit_account(Purpose::Login, "ada@example.com", a)
            .unwrap();
    }

    #[test]
    fn spellings_lower_folds_alike_share_a_key() {
        let throttle = Throttle::new(&config());
        let key = |email| throttle.account_key(Purpose::Login, email);
        assert_eq!(key("ian@example.com"), key(" \u{130}AN@Example.com"));
        // A final capital sigma: `σ` to `lower()`, `ς` to `str::to_lowercase`.
        assert_eq!(key("a\u{3c3}@example.com"), key("a\u{3a3}@example.com"));
        assert_ne!(key("ian@example.com"), key("jan@example.com"));
    }

    #[test]
    fn the_backoff_never_exceeds_its_maximum() {
        let throttle = Throttle::new(&AuthConfig {
            account_free_attempts: 1,
            account_backoff_secs: 1,
            account_max_backoff_secs: 3,
            ..AuthConfig::default()
        });
        let a = addr("10.0.0.1");
        throttle
            .admit_account(Purpose::Login, "x@example.com", a)
            .unwrap();
        let mut accounts = throttle.accounts.lock().unwrap();
        let account = accounts.values_mut().next().unwrap();
        for _ in 0..100 {
            account.blocked_until = None;
            account.attempts += 1;
        }
        drop(accounts);
        throttle
            .admit_account(Purpose::Login, "x@example.com", a)
            .unwrap();
        let Err(Refusal::Account(wait)) =
            throttle.admit_account(Purpose::Login, "x@example.com", a)
        else {
            panic!("refused");
        };
        assert!(wait <= Duration::from_secs(3));
    }

    #[test]
    fn the_sweep_forgets_idle_accounts_and_keeps_owners_addresses() {
        let throttle = Throttle::new(&AuthConfig {
            account_forget_secs: 0,
            ..AuthConfig::default()
        });
        let a = addr("10.0.0.1");
        for i in 0..100 {
            throttle
                .admit_account(Purpose::Login, &format!("u{i}@example.com"), a)
                .unwrap();
        }
        let owner = throttle
            .admit_account(Purpose::Login, "owner@example.com", a)
            .unwrap();
        throttle.succeeded(owner, a);
        assert_eq!(throttle.tracked().1, 101);
        throttle.sweep();
        assert_eq!(
            throttle.tracked().1,
            1,
            "only the account with a known address"
        );
        let none = Throttle::new(&AuthConfig {
            account_forget_secs: 0,
            known_address_days: 0,
            ..AuthConfig::default()
        });
        let key = none
            .admit_account(Purpose::Login, "owner@example.com", a)
            .unwrap();
        none.succeeded(key, a);
        none.sweep();
        assert_eq!(none.tracked().1, 0);
    }

    #[tokio::test]
    async fn hashing_refuses_beyond_its_slots_and_queue() {
        let hashing = Hashing::new(1, 1);
        let first = hashing.reserve().await.unwrap();
        // One may queue; the next is refused at once.
        let queued = {
            let reserve = hashing.reserve();
            tokio::pin!(reserve);
            assert!(futures_poll_once(reserve.as_mut()).await.is_none());
            assert_eq!(hashing.waiting(), 1);
            assert_eq!(hashing.reserve().await.unwrap_err(), Refusal::Busy);
            drop(first);
            reserve.await.unwrap()
        };
        assert_eq!(hashing.waiting(), 0);
        queued.run(|| ()).await.unwrap();
        assert_eq!(hashing.counts().peak.load(Ordering::Acquire), 1);
        assert_eq!(hashing.counts().done.load(Ordering::Acquire), 1);
    }

    /// Polls `fut` once: its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
        let mut fut = fut;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
