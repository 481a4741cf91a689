//! What the client and the emulator share, and nothing else: the encrypted envelope, the
//! request and answer formats, the limits, and the demo credentials of the local emulator.
//! `client/` and `operator/` both depend on this module, never on each other.
//!
//! - [`envelope`]: AES-256-GCM sealing and opening (`euid-protocol.md` §3).
//! - [`wire`]: the JSON inside the envelope: v3 requests and positional answers, v2.
//! - [`batch`]: batches within the item and body limits.

pub mod batch;
pub mod envelope;
pub mod wire;

pub use batch::{Batcher, Key};

/// Most identities in one request (the documented maximum).
pub const MAX_ITEMS_PER_REQUEST: usize = 5000;
/// The operator's body limit; every request stays under it.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most requests in flight the docs allow ("no more than 20 batches in parallel").
pub const MAX_CONCURRENCY: usize = 20;

/// The demo API key of the local emulator (`--env local`, `euid-map operator` without keys).
/// Local use only: it opens nothing but the emulator.
pub const DEMO_API_KEY: &str = "EUID-L-DEMO-local-emulator-not-a-real-key";
/// The demo client secret (base64 of 32 bytes) matching [`DEMO_API_KEY`]. Local use only.
pub const DEMO_CLIENT_SECRET: &str = "ZXVpZC1tYXAgbG9jYWwgZW11bGF0b3IgZGVtbyBrZXk=";
