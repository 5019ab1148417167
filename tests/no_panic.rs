//! "Nothing panics on input from the network": deterministic mutation testing of every decoder
//! that reads bytes from a socket or from Redis.
//!
//! One test per decoder family (framing + handshake, JSON, MessagePack, backplane `wire`, SignalR 2
//! `sr2`, channel naming + negotiate). Each family takes its seed vectors from
//! tests/data/vectors.json, checks that the unmutated valid ones still decode (so the test cannot
//! silently test nothing), then feeds every decoder of the family with
//! * a list of hand-made nasties (deep nesting, lengths of 2^32-1, lone surrogates, invalid UTF-8,
//!   bad VarInts, ...), each on its own named thread with a 2 MiB stack, the size of a tokio worker's
//!   stack, so a stack overflow names the input in its abort message;
//! * 1,000 to 10,000 mutants of every seed (see [`MUTATIONS_PER_SEED`]), each one to four stacked
//!   edits drawn from a fixed-seed xorshift64* generator: bit flips, interesting bytes, MessagePack
//!   headers declaring huge lengths, Int32 extremes, truncation, deletion, duplication, random and
//!   dictionary insertions, runs of one byte, splices of two seeds.
//!
//! Framing inputs are pushed in random-size chunks (one byte at a time, small pieces, whole, random),
//! and what a successful decode returns goes where the hub sends it next (re-encoding in both
//! protocols, the serializations inside backplane payloads, the helpers on SignalR 2 messages).
//!
//! Every call runs under `catch_unwind`; a panic is reported with the family, the seed vector, the
//! mutant's number, the function and the input in hex. A counting global allocator also fails any
//! call that asks for more than [`alloc_limit`] bytes in one allocation (a decoder that believed a
//! declared length), and refuses requests over 1 GiB outright so that such a bug aborts at once
//! instead of exhausting the machine. Stack overflows and refused allocations abort the process
//! rather than unwind: run with `NO_PANIC_TRACE=1` to print every case before it runs.
//!
//! Only "returns without panicking" is asserted for mutants, never what they decode to.

#[path = "common/vectors.rs"]
#[allow(dead_code)]
mod vectors;

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use switchboard::backplane::naming::{self, ChannelKind, Channels};
use switchboard::backplane::sr2::{self, Sr2Format, Sr2Message, Sr2Payload};
use switchboard::backplane::wire;
use switchboard::protocol::framing::read_varint;
use switchboard::protocol::{FrameKind, Framer, HubMessage, Protocol, handshake, json, msgpack, negotiate};
use vectors::Vector;

/// Mutants per seed vector per family. The framing family has the most seeds (every vector, framed
/// and unframed, and two whole connections) and pushes each input through six framers, so it gets
/// fewer per seed; the SignalR 2 family has only four seeds, so it gets more.
const MUTATIONS_PER_SEED: usize = 2_000;
const FRAMING_MUTATIONS_PER_SEED: usize = 1_000;
const SR2_MUTATIONS_PER_SEED: usize = 10_000;

/// ASP.NET Core's default `MaximumReceiveMessageSize`, the hub's default.
const MAX_MESSAGE: usize = 32 * 1024;

/// The stack of a tokio worker thread, where the hub runs its decoders.
const STACK: usize = 2 * 1024 * 1024;

/// At most this many failures are printed in full.
const SHOWN_FAILURES: usize = 20;

// ---------------------------------------------------------------------------------------------
// Allocation tracking

/// Records the largest single allocation request of each thread and refuses absurd ones.
struct Tracking;

/// Requests above this are refused (the process aborts with "memory allocation of N bytes failed").
const REFUSED_ABOVE: usize = 1 << 30;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

// SAFETY: every request is forwarded unchanged to `System`, or refused with a null pointer, which
// the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > REFUSED_ABOVE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > REFUSED_ABOVE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        if new_size > REFUSED_ABOVE {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// The largest single allocation a decoder may make for an input of `len` bytes: far above what
/// the input can justify (rmpv preallocates up to 64 KiB per declared length, buffers at most
/// double), far below what believing a declared 2^32-element header would take.
fn alloc_limit(len: usize) -> usize {
    (4 << 20).max(len.saturating_mul(16))
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/// xorshift64* (Vigna): tiny, fast, good enough to pick mutations, and fully reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // The state must never be zero.
        Rng(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[3]
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a, to give every (family, seed) pair its own fixed stream.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_bytes().iter().chain([0u8].iter()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

// ---------------------------------------------------------------------------------------------
// Mutation

/// Bytes worth planting: structural JSON characters, the record separator, every MessagePack
/// marker class boundary, and the extremes.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x1e, 0x20, 0x22, 0x2c, 0x3a, 0x5b, 0x5c, 0x5d, 0x7b, 0x7d, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
    0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xe0, 0xfe, 0xff,
];

/// MessagePack headers declaring huge lengths (and one ext), to be followed by far fewer bytes.
const LONG_HEADERS: &[&[u8]] = &[
    &[0xdc, 0xff, 0xff],
    &[0xdd, 0xff, 0xff, 0xff, 0xff],
    &[0xdd, 0x7f, 0xff, 0xff, 0xff],
    &[0xde, 0xff, 0xff],
    &[0xdf, 0xff, 0xff, 0xff, 0xff],
    &[0xc4, 0xff],
    &[0xc5, 0xff, 0xff],
    &[0xc6, 0xff, 0xff, 0xff, 0xff],
    &[0xd9, 0xff],
    &[0xda, 0xff, 0xff],
    &[0xdb, 0xff, 0xff, 0xff, 0xff],
    &[0xdb, 0x80, 0x00, 0x00, 0x00],
    &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0xff, 0x07],
];

/// Int32 values for length and count fields (written little- or big-endian).
const INT32S: &[u32] = &[
    0,
    1,
    0x7f,
    0x80,
    0xffff,
    0x7fff_fffe,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// A dictionary of tokens, as fuzzers use: JSON syntax, numbers out of every range, escapes
/// for lone surrogates and NUL, invalid and surrogate UTF-8, property names the decoders look for.
const TOKENS: &[&[u8]] = &[
    b"\"\\ud800\"",
    b"\\udc00",
    b"\\u0000",
    b"1e999",
    b"-1e999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"2147483648",
    b"-0",
    b"0.5",
    b"null",
    b"true",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b",",
    b":",
    b"\x1e",
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"{\"type\":",
    b"\"arguments\":[",
    b"\"headers\":{",
    b"\"streamIds\":[",
    b"\"protocol\":",
    b"\"version\":",
    b"\"error\":",
    b"\"CommandType\":",
    b":internal:ack:",
    b":group:",
    b":connection:",
    b"|",
    b" ",
];

/// One random edit of `data` (which may be empty). `others` are the family's seeds, for splices.
fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, others: &[Seed]) {
    let len = data.len();
    match rng.below(13) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        // An interesting byte, or any MessagePack marker from 0xc0 to 0xdf.
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = if rng.below(2) == 0 {
                *rng.pick(INTERESTING_BYTES)
            } else {
                0xc0 + rng.below(32) as u8
            };
        }
        // Any byte.
        2 if len > 0 => {
            let at = rng.below(len);
            data[at] = rng.byte();
        }
        // A header declaring a huge length, inserted or overwriting.
        3 => {
            let header = *rng.pick(LONG_HEADERS);
            let at = rng.below(len + 1);
            if rng.below(2) == 0 {
                data.splice(at..at, header.iter().copied());
            } else {
                let end = (at + header.len()).min(len);
                data.splice(at..end, header.iter().copied());
            }
        }
        // An extreme Int32, little- or big-endian, over four bytes.
        4 => {
            let value = *rng.pick(INT32S);
            let bytes = if rng.below(2) == 0 {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let at = rng.below(len + 1);
            let end = (at + 4).min(len);
            data.splice(at..end, bytes);
        }
        // Truncate.
        5 => data.truncate(rng.below(len + 1)),
        // Delete a slice.
        6 if len > 0 => {
            let at = rng.below(len);
            let end = at + 1 + rng.below((len - at).min(16));
            data.drain(at..end);
        }
        // Duplicate a slice somewhere.
        7 if len > 0 => {
            let at = rng.below(len);
            let end = at + 1 + rng.below(len - at);
            let slice = data[at..end].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, slice);
        }
        // Insert 1 to 16 random bytes.
        8 => {
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            let at = rng.below(len + 1);
            data.splice(at..at, bytes);
        }
        // Insert a dictionary token.
        9 | 10 => {
            let token = *rng.pick(TOKENS);
            let at = rng.below(len + 1);
            data.splice(at..at, token.iter().copied());
        }
        // Splice: our head, another seed's tail.
        11 if !others.is_empty() => {
            let other = &rng.pick(others).bytes;
            let keep = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(keep);
            data.extend_from_slice(&other[from..]);
        }
        // Insert one byte repeated (runs of nesting markers, digits, separators).
        _ => {
            let byte = if rng.below(2) == 0 {
                *rng.pick(INTERESTING_BYTES)
            } else {
                rng.byte()
            };
            let n = 1 + rng.below(64);
            let at = rng.below(len + 1);
            data.splice(at..at, std::iter::repeat_n(byte, n));
        }
    }
}

/// One to four stacked edits of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8], others: &[Seed]) -> Vec<u8> {
    let mut data = seed.to_vec();
    let edits = if rng.below(2) == 0 { 1 } else { 2 + rng.below(3) };
    for _ in 0..edits {
        mutate_once(rng, &mut data, others);
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Running cases

/// An input the family starts from.
#[derive(Clone)]
struct Seed {
    id: String,
    bytes: Vec<u8>,
}

fn seed(id: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        id: id.into(),
        bytes: bytes.into(),
    }
}

/// One input being exercised: where it came from and its bytes.
struct Case<'a> {
    seed: &'a str,
    /// "seed", "nasty" or "mutant #n".
    origin: String,
    input: &'a [u8],
}

/// The running tally of one family.
struct Family {
    name: &'static str,
    cases: usize,
    mutants: usize,
    unchanged_mutants: usize,
    calls: usize,
    /// Successful decodes of unmutated seeds, of nasties and of mutants.
    seed_oks: usize,
    nasty_oks: usize,
    mutant_oks: usize,
    failures: Vec<String>,
    failure_count: usize,
    trace: bool,
}

impl Family {
    fn new(name: &'static str) -> Self {
        Family {
            name,
            cases: 0,
            mutants: 0,
            unchanged_mutants: 0,
            calls: 0,
            seed_oks: 0,
            nasty_oks: 0,
            mutant_oks: 0,
            failures: Vec::new(),
            failure_count: 0,
            trace: std::env::var_os("NO_PANIC_TRACE").is_some(),
        }
    }

    fn fail(&mut self, case: &Case, what: &str, problem: String) {
        self.failure_count += 1;
        if self.failures.len() < SHOWN_FAILURES {
            self.failures.push(format!(
                "[{}] {} ({}) in {what}: {problem}\n    input: {}",
                self.name,
                case.seed,
                case.origin,
                short_hex(case.input)
            ));
        }
    }

    /// Runs one call under `catch_unwind` and the allocation check; `None` if it panicked.
    fn run<T>(&mut self, case: &Case, what: &str, f: impl FnOnce() -> T) -> Option<T> {
        self.calls += 1;
        LARGEST.set(0);
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let largest = LARGEST.get();
        if largest > alloc_limit(case.input.len()) {
            self.fail(case, what, format!("asked for {largest} bytes in one allocation"));
        }
        match outcome {
            Ok(value) => Some(value),
            Err(payload) => {
                self.fail(case, what, format!("panicked: {}", panic_message(&*payload)));
                None
            }
        }
    }

    /// [`Family::run`] for a decoder: counts its `Ok`s and returns the value.
    fn decode<T, E>(&mut self, case: &Case, what: &str, f: impl FnOnce() -> Result<T, E>) -> Option<T> {
        let value = self.run(case, what, f)?.ok()?;
        self.count_ok(case);
        Some(value)
    }

    fn count_ok(&mut self, case: &Case) {
        match case.origin.as_str() {
            "seed" => self.seed_oks += 1,
            "nasty" => self.nasty_oks += 1,
            _ => self.mutant_oks += 1,
        }
    }

    fn report(&self) {
        println!(
            "{}: {} cases ({} mutants, {} identical to their seed), {} calls; Ok from seeds {}, nasties {}, mutants {}",
            self.name,
            self.cases,
            self.mutants,
            self.unchanged_mutants,
            self.calls,
            self.seed_oks,
            self.nasty_oks,
            self.mutant_oks
        );
    }

    /// Fails the test with every recorded failure, and checks that the run tested something.
    fn finish(self) {
        self.report();
        assert!(
            self.failure_count == 0,
            "{} failure(s) in family {} (first {} shown):\n{}",
            self.failure_count,
            self.name,
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(self.seed_oks > 0, "{}: no seed decoded", self.name);
        assert!(self.mutant_oks > 0, "{}: no mutant decoded", self.name);
        assert!(
            self.unchanged_mutants * 10 < self.mutants,
            "{}: too many mutants identical to their seed",
            self.name
        );
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Hex, shortened to its head and tail when long.
fn short_hex(bytes: &[u8]) -> String {
    if bytes.len() <= 96 {
        vectors::hex_encode(bytes)
    } else {
        format!(
            "{}…{} ({} bytes)",
            vectors::hex_encode(&bytes[..64]),
            vectors::hex_encode(&bytes[bytes.len() - 16..]),
            bytes.len()
        )
    }
}

type Exercise = fn(&mut Family, &Case, &mut Rng);

/// Runs a family: its seeds unmutated, every nasty on its own named thread, then the mutants.
fn run_family(name: &'static str, seeds: &[Seed], per_seed: usize, exercise: Exercise) -> Family {
    let mut family = Family::new(name);
    for s in seeds {
        let mut rng = Rng::new(fnv1a(&[name, &s.id, "seed"]));
        one_case(&mut family, &s.id, "seed".into(), &s.bytes, &mut rng, exercise);
    }
    for (nasty, bytes) in nasties() {
        let thread = format!("{name}: nasty {nasty}");
        let mut rng = Rng::new(fnv1a(&[name, &nasty, "nasty"]));
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name(thread)
                .stack_size(STACK)
                .spawn_scoped(scope, || {
                    one_case(&mut family, &nasty, "nasty".into(), &bytes, &mut rng, exercise);
                })
                .expect("spawn")
                .join()
                .expect("a nasty's thread panicked outside of the checked calls");
        });
    }
    for s in seeds {
        let mut rng = Rng::new(fnv1a(&[name, &s.id]));
        for n in 0..per_seed {
            let input = mutate(&mut rng, &s.bytes, seeds);
            family.mutants += 1;
            if input == s.bytes {
                family.unchanged_mutants += 1;
            }
            one_case(
                &mut family,
                &s.id,
                format!("mutant #{n}"),
                &input,
                &mut rng,
                exercise,
            );
        }
    }
    family
}

fn one_case(
    family: &mut Family,
    seed: &str,
    origin: String,
    input: &[u8],
    rng: &mut Rng,
    exercise: Exercise,
) {
    let case = Case { seed, origin, input };
    if family.trace {
        eprintln!(
            "[{}] {} ({}): {}",
            family.name,
            case.seed,
            case.origin,
            short_hex(input)
        );
    }
    family.cases += 1;
    exercise(family, &case, rng);
}

// ---------------------------------------------------------------------------------------------
// Seeds and nasties

fn all_vectors() -> Vec<Vector> {
    vectors::all()
}

fn in_category(category: &str) -> Vec<Vector> {
    all_vectors()
        .into_iter()
        .filter(|v| v.category == category)
        .collect()
}

/// A vector's text without its trailing record separator (the framer strips it).
fn without_rs(bytes: &[u8]) -> Vec<u8> {
    bytes.strip_suffix(&[0x1e]).unwrap_or(bytes).to_vec()
}

/// The unframed MessagePack body of a `msgpack-hub` vector.
fn msgpack_body(v: &Vector) -> Vec<u8> {
    let bytes = v.bytes();
    if v.id.starts_with("mp.framed.") {
        let (_, prefix) = read_varint(&bytes).expect("varint").expect("complete");
        bytes[prefix..].to_vec()
    } else {
        bytes
    }
}

fn repeat(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes.repeat(n)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A valid SignalR 2.1 payload with one message of this key and Value.
fn sr2_payload(key: &str, value: &[u8], command_id: &str) -> Vec<u8> {
    sr2::encode(&Sr2Payload {
        id: 7,
        format: Sr2Format::V21,
        messages: vec![Sr2Message {
            source: "s".into(),
            key: key.into(),
            value: Bytes::copy_from_slice(value),
            command_id: command_id.into(),
            ..Sr2Message::default()
        }],
        server_creation_ticks: i64::MAX,
    })
}

/// A SignalR 2.1 payload around a raw ScaleoutMessage body (count, messages, ticks).
fn sr2_raw(body: &[u8]) -> Vec<u8> {
    let len = i32::try_from(body.len()).expect("small");
    cat(&[b"1 ", &len.to_le_bytes(), body])
}

/// Hand-made inputs that have broken decoders elsewhere. Every family gets all of them.
fn nasties() -> Vec<(String, Vec<u8>)> {
    let deep_json = |n: usize| cat(&[&repeat(b"[", n), &repeat(b"]", n)]);
    let ff4 = [0xffu8; 4];
    let list: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        // JSON
        ("json.nested_arrays_10000", deep_json(10_000)),
        ("json.nested_arrays_unclosed_10000", repeat(b"[", 10_000)),
        (
            "json.nested_objects_10000",
            cat(&[&repeat(b"{\"a\":", 10_000), b"1", &repeat(b"}", 10_000)]),
        ),
        (
            "json.invocation_arguments_10000_deep",
            cat(&[
                b"{\"type\":1,\"target\":\"t\",\"arguments\":[",
                &deep_json(10_000),
                b"]}",
            ]),
        ),
        (
            "json.completion_result_10000_deep",
            cat(&[
                b"{\"type\":3,\"invocationId\":\"1\",\"result\":",
                &deep_json(10_000),
                b"}",
            ]),
        ),
        ("json.lone_surrogate", b"\"\\ud800\"".to_vec()),
        (
            "json.lone_surrogates_in_invocation",
            b"{\"type\":1,\"target\":\"\\ud800\",\"arguments\":[\"\\udc00\",\"\\ud800\\u0041\"],\"headers\":{\"\\udfff\":\"\\ud800\"}}".to_vec(),
        ),
        (
            "json.lone_surrogate_handshake",
            b"{\"protocol\":\"\\ud800\",\"version\":1}".to_vec(),
        ),
        (
            "json.invalid_utf8",
            b"{\"type\":1,\"target\":\"\xff\xfe\",\"arguments\":[\"\xc3\x28\"]}".to_vec(),
        ),
        (
            "json.overlong_and_surrogate_utf8",
            b"{\"type\":1,\"target\":\"\xc0\xaf\xed\xa0\x80\",\"arguments\":[]}".to_vec(),
        ),
        (
            "json.numbers_out_of_range",
            b"{\"type\":1e999,\"sequenceId\":18446744073709551616,\"version\":-9223372036854775809}"
                .to_vec(),
        ),
        ("json.sequence_1e308", b"{\"type\":8,\"sequenceId\":1e308}".to_vec()),
        (
            "json.type_of_100000_digits",
            cat(&[b"{\"type\":", &repeat(b"9", 100_000), b"}"]),
        ),
        (
            "json.float_of_100000_digits",
            cat(&[b"{\"type\":2,\"invocationId\":\"1\",\"item\":0.", &repeat(b"1", 100_000), b"}"]),
        ),
        (
            "json.negotiate_nested_transports",
            cat(&[b"{\"availableTransports\":", &repeat(b"[", 10_000)]),
        ),
        (
            "json.negotiate_version_out_of_range",
            b"{\"negotiateVersion\":4294967296,\"connectionToken\":\"\\ud800\"}".to_vec(),
        ),
        ("json.nul_bytes", b"{\"type\":6\x00}\x00\x1e\x00".to_vec()),
        // MessagePack
        ("mp.0x91_100000", repeat(&[0x91], 100_000)),
        ("mp.nested_maps_50000", repeat(&[0x81, 0xc0], 50_000)),
        (
            "mp.invocation_arguments_0x91_100000",
            cat(&[&[0x96, 0x01, 0x80, 0xc0, 0xa1, 0x74], &repeat(&[0x91], 100_000)]),
        ),
        ("mp.array32_max", cat(&[&[0xdd], &ff4])),
        ("mp.array32_max_of_nils", cat(&[&[0xdd], &ff4, &repeat(&[0xc0], 1000)])),
        ("mp.map32_max", cat(&[&[0xdf], &ff4])),
        ("mp.array16_max", vec![0xdc, 0xff, 0xff, 0x06]),
        (
            "mp.invocation_arguments_array32_max",
            cat(&[&[0x96, 0x01, 0x80, 0xc0, 0xa1, 0x74, 0xdd], &ff4, &[0x90]]),
        ),
        ("mp.headers_map32_max", cat(&[&[0x95, 0x01, 0xdf], &ff4])),
        ("mp.str32_max", cat(&[&[0xdb], &ff4, b"abc"])),
        (
            "mp.invocation_target_str32_max",
            cat(&[&[0x96, 0x01, 0x80, 0xc0, 0xdb], &ff4, b"abc"]),
        ),
        ("mp.bin32_max", cat(&[&[0xc6], &ff4, b"abc"])),
        ("mp.ext32_max", cat(&[&[0xc9], &ff4, &[0x01]])),
        (
            "mp.invalid_utf8_target",
            vec![0x96, 0x01, 0x80, 0xc0, 0xa2, 0xff, 0xfe, 0x90, 0x90],
        ),
        (
            "mp.nan_item",
            vec![0x94, 0x02, 0x80, 0xa1, 0x31, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
        ),
        (
            "mp.infinite_f32_result",
            vec![0x95, 0x03, 0x80, 0xa1, 0x31, 0x03, 0xca, 0x7f, 0x80, 0x00, 0x00],
        ),
        ("mp.u64_max_sequence", vec![0x92, 0x08, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ("mp.i64_min_sequence", vec![0x92, 0x09, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ("mp.u64_max_type", vec![0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ("mp.reserved_c1", vec![0xc1]),
        (
            "mp.map_keys_of_every_type",
            vec![
                0x95, 0x03, 0x84, 0xc0, 0xa1, 0x78, 0x91, 0x01, 0xa1, 0x78, 0xc4, 0x01, 0xff, 0xa1, 0x78,
                0xd4, 0x01, 0x02, 0xa1, 0x78, 0xa1, 0x31, 0x02,
            ],
        ),
        // VarInt framing
        ("varint.five_0xff", vec![0xff; 5]),
        ("varint.five_0xff_then_body", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]),
        ("varint.2^31", vec![0x80, 0x80, 0x80, 0x80, 0x08]),
        ("varint.max_then_three_bytes", vec![0xff, 0xff, 0xff, 0xff, 0x07, 0x61, 0x62, 0x63]),
        ("varint.six_continuations", vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        ("text.70000_bytes_no_separator", repeat(b"a", 70_000)),
        ("text.10000_separators", repeat(&[0x1e], 10_000)),
        // ASP.NET Core backplane
        ("wire.excluded_array32_max", cat(&[&[0x92, 0xdd], &ff4])),
        ("wire.serializations_map32_max", cat(&[&[0x92, 0xc0, 0xdf], &ff4])),
        (
            "wire.trailing_element_0x91_100000",
            cat(&[&[0x93, 0xc0, 0x80], &repeat(&[0x91], 100_000)]),
        ),
        (
            "wire.trailing_element_nested_maps",
            cat(&[&[0x93, 0xc0, 0x80], &repeat(&[0x81, 0xc0], 50_000)]),
        ),
        ("wire.trailing_ext32_max", cat(&[&[0x93, 0xc0, 0x80, 0xc9], &ff4, &[0x01]])),
        ("wire.array32_max_of_nils", cat(&[&[0xdd], &ff4, &repeat(&[0xc0], 64)])),
        ("wire.group_command_str32_max", cat(&[&[0x95, 0x01, 0xdb], &ff4])),
        (
            "wire.group_command_action_u64_max",
            vec![0x95, 0x01, 0xa1, 0x53, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x47, 0xa1, 0x43],
        ),
        ("wire.ack_u64_max", vec![0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ("wire.ack_i64_min", vec![0x91, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ("wire.completion_bin32_max", cat(&[&[0x92, 0xa4], b"json", &[0xc6], &ff4])),
        ("wire.invalid_utf8_protocol", vec![0x92, 0x90, 0x81, 0xa2, 0xff, 0xfe, 0xc4, 0x00]),
        // SignalR 2 backplane
        ("sr2.count_i32_max", sr2_raw(&cat(&[&0x7fff_ffff_i32.to_le_bytes(), &[0; 8]]))),
        ("sr2.count_negative", sr2_raw(&cat(&[&(-1_i32).to_le_bytes(), &[0; 8]]))),
        (
            "sr2.string_length_five_0xff",
            sr2_raw(&cat(&[&1_i32.to_le_bytes(), &[0xff; 5], &[0; 24]])),
        ),
        (
            "sr2.string_length_2^31-1",
            sr2_raw(&cat(&[&1_i32.to_le_bytes(), &[0xff, 0xff, 0xff, 0xff, 0x07], &[0; 24]])),
        ),
        (
            "sr2.value_length_negative",
            sr2_raw(&cat(&[&1_i32.to_le_bytes(), &[0x00, 0x00], &ff4, &[0; 24]])),
        ),
        (
            "sr2.invalid_utf8_key",
            sr2_raw(&cat(&[&1_i32.to_le_bytes(), &[0x00, 0x02, 0xff, 0xfe], &[0; 24]])),
        ),
        ("sr2.v20_length_negative", cat(&[&[0x2a, 0, 0, 0, 0, 0, 0, 0], &ff4])),
        ("sr2.id_overflows_u64", b"99999999999999999999 \x04\x00\x00\x00\x00\x00\x00\x00".to_vec()),
        ("sr2.value_json_10000_deep", sr2_payload("h-ChatHub", &deep_json(10_000), "")),
        (
            "sr2.hub_invocation_lone_surrogate",
            sr2_payload("h-ChatHub", b"{\"H\":\"\\ud800\",\"M\":\"x\",\"A\":[\"\\udc00\"]}", ""),
        ),
        (
            "sr2.command_type_1e999",
            sr2_payload("c-x", b"{\"Id\":\"x\",\"CommandType\":1e999}", "x"),
        ),
        (
            "sr2.command_type_u64_overflow",
            sr2_payload("c-x", b"{\"Id\":\"x\",\"CommandType\":18446744073709551616}", "x"),
        ),
        (
            "sr2.command_type_i64_min",
            sr2_payload(
                "c-x",
                b"{\"Id\":\"x\",\"CommandType\":-9223372036854775808,\"Value\":\"hg-.\"}",
                "x",
            ),
        ),
        ("sr2.keys_without_dots", sr2_payload("hg-", b"{}", "")),
        // Channel names
        ("channel.colons", b"::::::".to_vec()),
        ("channel.hub_only", b"Hub:".to_vec()),
        ("channel.ack_without_server", b"Hub:internal:ack:".to_vec()),
        ("channel.long", cat(&[&repeat(b"a", 100_000), b":all"])),
        ("channel.multibyte_boundaries", "é:€:group:\u{10FFFF}".as_bytes().to_vec()),
        ("channel.invalid_utf8", b"\xff\xfe:all".to_vec()),
        // negotiateVersion query values
        ("version.many_digits", repeat(b"9", 1000)),
        ("version.fullwidth_digit", "\u{ff11}".as_bytes().to_vec()),
        ("version.signs", b"+-1".to_vec()),
    ];
    let mut out: Vec<(String, Vec<u8>)> = list
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes))
        .collect();
    // Valid messages nested right around the decoders' limits (serde_json: 128 levels; rmpv: a
    // budget of 256 at 2 per level), so what follows a successful decode sees the deepest values.
    for depth in [100, 120, 125, 126, 127, 128, 129, 130] {
        out.push((
            format!("json.invocation_arguments_{depth}_deep"),
            cat(&[
                b"{\"type\":1,\"target\":\"t\",\"arguments\":",
                &deep_json(depth),
                b"}",
            ]),
        ));
        out.push((
            format!("mp.invocation_arguments_{depth}_deep"),
            cat(&[
                &[0x95, 0x01, 0x80, 0xc0, 0xa1, 0x74],
                &repeat(&[0x91], depth),
                &[0x90],
            ]),
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Family: framing and handshake

/// Pushes `input` into a fresh framer in random-size chunks, pulling frames after each push until
/// it needs more bytes or fails (one checked call for the whole stream); returns the frames.
fn frame_all(family: &mut Family, case: &Case, rng: &mut Rng, kind: FrameKind, max: usize) -> Vec<Bytes> {
    let what = format!("Framer::push + next_frame({kind:?}, max {max})");
    let pieces = chunks(rng, case.input);
    family
        .run(case, &what, || {
            let mut framer = Framer::new(kind, max);
            let mut frames = Vec::new();
            for chunk in pieces {
                framer.push(chunk);
                loop {
                    match framer.next_frame() {
                        Ok(Some(frame)) => frames.push(frame),
                        Ok(None) => break,
                        // An error ends the connection.
                        Err(_) => return frames,
                    }
                }
            }
            frames
        })
        .unwrap_or_default()
}

/// Splits `input` into chunks: one byte at a time, small pieces, whole, or random sizes.
fn chunks<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
    let len = input.len().max(1);
    let max = match rng.below(8) {
        0 => 1,
        1 | 2 => 1 + rng.below(8),
        3 | 4 => len,
        _ => 1 + rng.below(len),
    };
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = (1 + rng.below(max)).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

fn exercise_framing(family: &mut Family, case: &Case, rng: &mut Rng) {
    family.run(case, "read_varint", || read_varint(case.input));
    for (kind, max) in [
        (FrameKind::Text, MAX_MESSAGE),
        (FrameKind::Binary, MAX_MESSAGE),
        (FrameKind::Text, 16),
        (FrameKind::Binary, 16),
        (FrameKind::Binary, usize::MAX),
    ] {
        let frames = frame_all(family, case, rng, kind, max);
        // Only the first text record of a transport is a handshake, on either side.
        if let (FrameKind::Text, Some(first)) = (kind, frames.first()) {
            family.decode(case, "handshake::parse_request", || {
                handshake::parse_request(first)
            });
            family.decode(case, "handshake::parse_response", || {
                handshake::parse_response(first)
            });
        }
    }
    exercise_connection(family, case, rng);
}

/// What the hub does with a new connection's bytes: Text framing until the handshake request,
/// then the negotiated protocol's framing and decoder for everything after it, in one framer.
/// One checked call for the whole connection; counts one Ok per message decoded.
fn exercise_connection(family: &mut Family, case: &Case, rng: &mut Rng) {
    let pieces = chunks(rng, case.input);
    let decoded = family.run(
        case,
        "connection: Framer + handshake::parse_request + Protocol::decode",
        || {
            let mut framer = Framer::new(FrameKind::Text, MAX_MESSAGE);
            let mut protocol: Option<Protocol> = None;
            let mut decoded = 0;
            for chunk in pieces {
                framer.push(chunk);
                loop {
                    let frame = match framer.next_frame() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(_) => return decoded,
                    };
                    match protocol {
                        None => {
                            let Ok(request) = handshake::parse_request(&frame) else {
                                return decoded;
                            };
                            let Some(chosen) = Protocol::from_name(&request.protocol) else {
                                return decoded;
                            };
                            framer.set_kind(chosen.frame_kind());
                            protocol = Some(chosen);
                        }
                        Some(p) => match p.decode(&frame) {
                            Ok(_) => decoded += 1,
                            Err(_) => return decoded,
                        },
                    }
                }
            }
            decoded
        },
    );
    for _ in 0..decoded.unwrap_or(0) {
        family.count_ok(case);
    }
}

#[test]
fn framing_and_handshake_never_panic() {
    let all = all_vectors();
    let mut seeds: Vec<Seed> = Vec::new();
    for v in &all {
        seeds.push(seed(v.id.clone(), v.bytes()));
        if let Some(framed) = v.framed_bytes() {
            seeds.push(seed(format!("{}+framed", v.id), framed));
        }
    }
    // Whole connections: a handshake followed by messages of its protocol.
    let mut json_stream = all
        .iter()
        .find(|v| v.id == "handshake.request.json_v1")
        .expect("json handshake")
        .bytes();
    let mut mp_stream = handshake::request("messagepack", 1);
    for v in &all {
        match v.category.as_str() {
            "json-hub" => json_stream.extend(v.bytes()),
            "msgpack-hub" => mp_stream.extend(v.framed_bytes().unwrap_or_default()),
            _ => {}
        }
    }
    seeds.push(seed("stream.json_connection", json_stream));
    seeds.push(seed("stream.messagepack_connection", mp_stream));

    // Sanity: the valid streams frame and their handshakes parse.
    let mut sane = 0;
    for v in &all {
        let bytes = v.bytes();
        if v.category == "json-handshake" || v.category == "json-hub" {
            let mut framer = Framer::new(FrameKind::Text, MAX_MESSAGE);
            framer.push(&bytes);
            let frame = framer.next_frame().expect("frames").expect("one frame");
            if v.id.starts_with("handshake.request.") {
                handshake::parse_request(&frame).expect("valid request");
            }
            if v.id.starts_with("handshake.response.") {
                handshake::parse_response(&frame).expect("valid response");
            }
            sane += 1;
        }
        if let Some(framed) = v.framed_bytes() {
            let mut framer = Framer::new(FrameKind::Binary, MAX_MESSAGE);
            framer.push(&framed);
            assert_eq!(
                framer.next_frame().expect("frames").as_deref(),
                Some(&bytes[..]),
                "{}",
                v.id
            );
            sane += 1;
        }
    }
    assert_eq!(
        sane,
        34 + 19,
        "json-handshake + json-hub text frames, framed msgpack vectors"
    );

    run_family(
        "framing+handshake",
        &seeds,
        FRAMING_MUTATIONS_PER_SEED,
        exercise_framing,
    )
    .finish();
}

// ---------------------------------------------------------------------------------------------
// Family: JSON

/// What a decoded message goes through next: re-encoding in both protocols and reading back.
fn exercise_reencode(family: &mut Family, case: &Case, message: &HubMessage) {
    for p in Protocol::ALL {
        let Some(framed) = family.run(case, "Protocol::encode(decoded)", || p.encode(message)) else {
            continue;
        };
        let body = match p {
            Protocol::Json => without_rs(&framed),
            Protocol::MessagePack => match read_varint(&framed) {
                Ok(Some((_, prefix))) => framed[prefix..].to_vec(),
                _ => continue,
            },
        };
        family.run(case, "Protocol::decode(re-encoded)", || p.decode(&body));
    }
    family.run(case, "msgpack::encode_body(decoded)", || {
        msgpack::encode_body(message)
    });
}

fn exercise_json(family: &mut Family, case: &Case, _rng: &mut Rng) {
    let input = case.input;
    if let Some(value) = family.decode(case, "json::parse_value", || json::parse_value(input)) {
        family.run(case, "json::value_to_json(parsed)", || {
            json::value_to_json(&value)
        });
        family.run(case, "json::write_value(parsed)", || {
            let mut out = Vec::new();
            json::write_value(&mut out, &value);
            out
        });
    }
    family.decode(case, "Protocol::Json.decode", || Protocol::Json.decode(input));
    if let Some(Some(message)) = family.decode(case, "json::decode", || json::decode(input)) {
        exercise_reencode(family, case, &message);
    }
    family.decode(case, "handshake::parse_request", || {
        handshake::parse_request(input)
    });
    family.decode(case, "handshake::parse_response", || {
        handshake::parse_response(input)
    });
    family.decode(case, "negotiate::parse_response", || {
        negotiate::parse_response(input)
    });
}

#[test]
fn json_decoders_never_panic() {
    let mut seeds = Vec::new();
    for category in ["json-hub", "json-handshake", "negotiate"] {
        for v in in_category(category) {
            seeds.push(seed(v.id.clone(), without_rs(&v.bytes())));
        }
    }
    for v in in_category("json-hub") {
        let decoded = json::decode(&without_rs(&v.bytes()));
        assert!(matches!(decoded, Ok(Some(_))), "{}: {decoded:?}", v.id);
    }
    assert!(seeds.len() >= 36);
    run_family("json", &seeds, MUTATIONS_PER_SEED, exercise_json).finish();
}

// ---------------------------------------------------------------------------------------------
// Family: MessagePack

fn exercise_msgpack(family: &mut Family, case: &Case, rng: &mut Rng) {
    let input = case.input;
    family.decode(case, "Protocol::MessagePack.decode", || {
        Protocol::MessagePack.decode(input)
    });
    if let Some(Some(message)) = family.decode(case, "msgpack::decode", || msgpack::decode(input)) {
        exercise_reencode(family, case, &message);
    }
    // The same bytes as a framed stream.
    for frame in frame_all(family, case, rng, FrameKind::Binary, MAX_MESSAGE) {
        family.decode(case, "msgpack::decode(frame)", || msgpack::decode(&frame));
    }
}

#[test]
fn msgpack_decoders_never_panic() {
    let mut seeds = Vec::new();
    for v in in_category("msgpack-hub") {
        let body = msgpack_body(&v);
        let decoded = msgpack::decode(&body);
        assert!(matches!(decoded, Ok(Some(_))), "{}: {decoded:?}", v.id);
        seeds.push(seed(v.id.clone(), body));
        if let Some(framed) = v.framed_bytes() {
            seeds.push(seed(format!("{}+framed", v.id), framed));
        }
    }
    assert!(seeds.len() >= 22);
    run_family("msgpack", &seeds, MUTATIONS_PER_SEED, exercise_msgpack).finish();
}

// ---------------------------------------------------------------------------------------------
// Family: ASP.NET Core backplane payloads

/// Every kind of channel, so `decode_for_channel` takes every branch.
fn channel_kinds() -> [ChannelKind; 7] {
    [
        ChannelKind::All,
        ChannelKind::Connection("c".into()),
        ChannelKind::Group("g".into()),
        ChannelKind::User("u".into()),
        ChannelKind::InternalGroups,
        ChannelKind::Ack("s".into()),
        ChannelKind::Return("s".into()),
    ]
}

/// A serialization carried in a payload, read as the protocol it names (as the dashboard does).
fn exercise_serialization(family: &mut Family, case: &Case, rng: &mut Rng, name: &str, framed: &Bytes) {
    let Some(protocol) = Protocol::from_name(name) else {
        return;
    };
    let mut framer = Framer::new(protocol.frame_kind(), MAX_MESSAGE);
    for chunk in chunks(rng, framed) {
        framer.push(chunk);
    }
    while let Some(Ok(Some(frame))) =
        family.run(case, "Framer::next_frame(serialization)", || framer.next_frame())
    {
        family.decode(case, "Protocol::decode(serialization)", || {
            protocol.decode(&frame)
        });
    }
}

fn exercise_wire(family: &mut Family, case: &Case, rng: &mut Rng) {
    let payload = Bytes::copy_from_slice(case.input);
    if let Some(inv) = family.decode(case, "wire::decode_invocation", || {
        wire::decode_invocation(&payload)
    }) {
        for (name, framed) in &inv.serializations {
            exercise_serialization(family, case, rng, name, framed);
        }
        family.run(case, "wire::encode_invocation(decoded)", || {
            let excluded: Vec<&str> = inv.excluded.iter().map(String::as_str).collect();
            let ser: Vec<(&str, &[u8])> = inv
                .serializations
                .iter()
                .map(|(name, bytes)| (name.as_str(), &bytes[..]))
                .collect();
            let client_result = inv.invocation_id.as_deref().zip(inv.return_channel.as_deref());
            wire::encode_invocation(&excluded, &ser, client_result)
        });
    }
    if let Some(command) = family.decode(case, "wire::decode_group_command", || {
        wire::decode_group_command(&payload)
    }) {
        family.run(case, "wire::encode_group_command(decoded)", || {
            wire::encode_group_command(&command)
        });
    }
    if let Some(id) = family.decode(case, "wire::decode_ack", || wire::decode_ack(&payload)) {
        family.run(case, "wire::encode_ack(decoded)", || wire::encode_ack(id));
    }
    if let Some(completion) = family.decode(case, "wire::decode_completion", || {
        wire::decode_completion(&payload)
    }) {
        exercise_serialization(family, case, rng, &completion.protocol, &completion.message);
        family.run(case, "wire::encode_completion(decoded)", || {
            wire::encode_completion(&completion.protocol, &completion.message)
        });
    }
    for kind in channel_kinds() {
        family.decode(case, "wire::decode_for_channel", || {
            wire::decode_for_channel(&kind, &payload)
        });
    }
}

#[test]
fn wire_decoders_never_panic() {
    let mut seeds = Vec::new();
    for v in in_category("aspnetcore-redis") {
        let payload = Bytes::from(v.bytes());
        let ok = if v.id.starts_with("redis.ack.") {
            wire::decode_ack(&payload).is_ok()
        } else if v.id.starts_with("redis.group.") {
            wire::decode_group_command(&payload).is_ok()
        } else if v.id.starts_with("redis.invocation.") {
            wire::decode_invocation(&payload).is_ok()
        } else if v.id.starts_with("redis.completion.") {
            wire::decode_completion(&payload).is_ok()
        } else {
            panic!("aspnetcore-redis vector {} has no decoder here: add a case", v.id);
        };
        assert!(ok, "{} does not decode", v.id);
        seeds.push(seed(v.id.clone(), payload.to_vec()));
    }
    assert_eq!(seeds.len(), 16);
    run_family("wire", &seeds, MUTATIONS_PER_SEED, exercise_wire).finish();
}

// ---------------------------------------------------------------------------------------------
// Family: SignalR 2 backplane payloads

fn exercise_sr2_payload(family: &mut Family, case: &Case, payload: &Sr2Payload) {
    family.run(case, "Sr2Payload::server_creation_time", || {
        payload.server_creation_time()
    });
    family.run(case, "sr2::encode(decoded)", || sr2::encode(payload));
    for message in &payload.messages {
        family.run(case, "Sr2Message::kind", || message.kind());
        family.run(case, "Sr2Message::excluded_signals", || {
            message.excluded_signals().count()
        });
        family.decode(case, "Sr2Message::value_json", || message.value_json());
        family.decode(case, "Sr2Message::hub_invocation", || message.hub_invocation());
        if let Some(command) = family.decode(case, "Sr2Message::command", || message.command()) {
            family.run(case, "Sr2Command::hub_group", || {
                command.hub_group().map(|(h, g)| h.len() + g.len())
            });
        }
    }
}

fn exercise_sr2(family: &mut Family, case: &Case, _rng: &mut Rng) {
    let input = case.input;
    if let Some(payload) = family.decode(case, "sr2::decode", || sr2::decode(input)) {
        exercise_sr2_payload(family, case, &payload);
    }
    for format in [Sr2Format::V21, Sr2Format::V20] {
        if let Some(payload) = family.decode(case, "sr2::decode_as", || sr2::decode_as(input, format)) {
            exercise_sr2_payload(family, case, &payload);
        }
    }
}

#[test]
fn sr2_decoders_never_panic() {
    let mut seeds = Vec::new();
    for v in in_category("signalr2-redis") {
        let decoded = sr2::decode(&v.bytes()).unwrap_or_else(|e| panic!("{}: {e}", v.id));
        assert!(!decoded.messages.is_empty(), "{}", v.id);
        for m in &decoded.messages {
            if !m.is_ack {
                m.value_json().unwrap_or_else(|e| panic!("{}: {e}", v.id));
            }
        }
        seeds.push(seed(v.id.clone(), v.bytes()));
    }
    assert_eq!(seeds.len(), 4);
    run_family("sr2", &seeds, SR2_MUTATIONS_PER_SEED, exercise_sr2).finish();
}

// ---------------------------------------------------------------------------------------------
// Family: channel names and negotiate

const HUB: &str = "MyApp.Hubs.ChatHub";
const PREFIXES: &[&str] = &["", "MyApp", "p:", "é"];

/// The channels of every kind, as built by `Channels` and as the vectors name them.
fn channel_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for prefix in PREFIXES {
        let c = Channels::new(*prefix, HUB);
        for (what, name) in [
            ("all", c.all()),
            ("connection", c.connection("c3hUeXZxWm1Qb3FJbEFhQQ")),
            ("group", c.group("room:1")),
            ("user", c.user("alice")),
            ("groups", c.internal_groups()),
            ("ack", c.ack("server_1")),
            ("return", c.return_channel("server_1")),
            ("nodes", c.nodes()),
        ] {
            seeds.push(seed(format!("channel.{what}[{prefix}]"), name.into_bytes()));
        }
    }
    for v in all_vectors() {
        // The SignalR 2 vectors name an event key, not a channel template.
        if let (Some(template), "aspnetcore-redis") = (&v.channel, v.category.as_str()) {
            let name = template
                .split(" (")
                .next()
                .unwrap_or(template)
                .replace("{prefix}", "p:")
                .replace("{HubFullName}", HUB)
                .replace("{serverName}", "server_1")
                .replace("{connectionId}", "c1");
            seeds.push(seed(format!("channel.{}", v.id), name.into_bytes()));
        }
    }
    seeds
}

fn exercise_naming(family: &mut Family, case: &Case, rng: &mut Rng) {
    let text = String::from_utf8_lossy(case.input);
    // The name as the wire channel, under fixed prefixes and under a prefix cut from the input.
    let cut = rng.below(text.len() + 1);
    let own_prefix = text.get(..cut).unwrap_or("");
    for prefix in PREFIXES.iter().copied().chain([own_prefix]) {
        if let Some(Some((hub, kind))) =
            family.run(case, "naming::classify", || naming::classify(prefix, &text))
        {
            family.run(case, "ChannelKind::label", || kind.label());
            // The decoder this channel calls for, on a payload of that kind.
            let payload = Bytes::from_static(&[0x95, 0x2a, 0xa1, 0x53, 0x01, 0xa1, 0x47, 0xa1, 0x43]);
            family.run(case, "wire::decode_for_channel(classified)", || {
                wire::decode_for_channel(&kind, &payload)
            });
            let channels = Channels::new(prefix, hub);
            family.run(case, "Channels::classify", || channels.classify(&text));
        }
    }
    // The name as the prefix and as the hub of a `Channels`.
    family.run(case, "naming::escape_glob", || naming::escape_glob(&text));
    family.run(case, "Channels::tap_pattern", || Channels::tap_pattern(&text));
    let channels = Channels::new(text.as_ref(), text.as_ref());
    family.run(case, "Channels::classify(own)", || {
        channels.classify(&channels.group(&text))
    });
    family.run(case, "naming::nodes_channel", || naming::nodes_channel(&text));
    // The text as a `negotiateVersion` query value, and the bytes as a negotiate response.
    family.decode(case, "negotiate::select_version", || {
        negotiate::select_version(Some(&text))
    });
    for minimum in [0, 1, 2, u32::MAX] {
        family.decode(case, "negotiate::select_version_with_minimum", || {
            negotiate::select_version_with_minimum(Some(&text), minimum)
        });
    }
    if let Some(response) = family.decode(case, "negotiate::parse_response", || {
        negotiate::parse_response(case.input)
    }) {
        family.run(case, "NegotiateResponse::transport_id", || {
            response.transport_id().map(str::len)
        });
    }
}

#[test]
fn naming_and_negotiate_never_panic() {
    let mut seeds = channel_seeds();
    for s in &seeds {
        let text = std::str::from_utf8(&s.bytes).expect("utf-8");
        let prefix = PREFIXES
            .iter()
            .copied()
            .filter(|p| text.starts_with(p))
            .max_by_key(|p| p.len())
            .unwrap_or("");
        let expected = !s.id.starts_with("channel.nodes");
        assert_eq!(
            naming::classify(prefix, text).is_some(),
            expected,
            "{}: {text}",
            s.id
        );
    }
    for v in in_category("negotiate") {
        seeds.push(seed(v.id.clone(), v.bytes()));
    }
    negotiate::parse_response(&in_category("negotiate")[0].bytes()).expect("negotiate.response.v1 parses");
    for version in [
        "0",
        "1",
        "2",
        "+1",
        " 1 ",
        "2147483647",
        "-1",
        "",
        "1.0",
        "2147483648",
    ] {
        seeds.push(seed(format!("version[{version}]"), version.as_bytes().to_vec()));
    }
    assert_eq!(negotiate::select_version(Some("1")), Ok(1));
    run_family("naming+negotiate", &seeds, MUTATIONS_PER_SEED, exercise_naming).finish();
}

// ---------------------------------------------------------------------------------------------
// The harness itself

#[test]
fn mutations_are_deterministic_and_change_the_input() {
    let seeds = vec![seed("a", b"{\"type\":6}".to_vec()), seed("b", vec![0x91, 0x06])];
    let run = || {
        let mut rng = Rng::new(fnv1a(&["self-test"]));
        (0..1000)
            .map(|_| mutate(&mut rng, &seeds[0].bytes, &seeds))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run(), "same seed, same mutants");
    let changed = first.iter().filter(|m| m[..] != seeds[0].bytes[..]).count();
    assert!(
        changed > 900,
        "only {changed} of 1000 mutants differ from the seed"
    );
    let distinct: std::collections::HashSet<&Vec<u8>> = first.iter().collect();
    assert!(distinct.len() > 800, "only {} distinct mutants", distinct.len());
}
