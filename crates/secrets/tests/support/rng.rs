//! The deterministic generators behind the generated test and benchmark inputs: the same
//! sequence on every run, so a failure or a measurement can be repeated. Shared by the
//! integration tests and, through `#[path]`, the benches; each uses one of them.

#![allow(dead_code)]

/// xorshift64: the redaction inputs.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// xorshift64*: the detection inputs.
pub struct XorShiftStar(pub u64);

impl XorShiftStar {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
