//! The built-in generator as a block reader: every worker runs the same deterministic
//! generator and renders only the blocks it owns (skipping the rest is cheap), so the
//! stream is identical for any worker count without coordination.

use crate::generator::{Generator, GeneratorConfig};
use crate::source::block::BlockReader;

/// Generated events as records; positions are global event numbers.
pub struct GeneratorReader {
    generator: Generator,
    line: Vec<u8>,
    position: u64,
}

impl GeneratorReader {
    /// A reader producing the events of `cfg`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        GeneratorReader { generator: Generator::new(cfg), line: Vec::with_capacity(512), position: 0 }
    }
}

impl BlockReader for GeneratorReader {
    fn next_block(&mut self, len: usize, visit: bool, record: &mut dyn FnMut(&[u8], u64)) -> usize {
        let mut read = 0;
        while read < len {
            self.line.clear();
            let more = if visit { self.generator.next_line(&mut self.line) } else { self.generator.skip() };
            if !more {
                break;
            }
            if visit {
                let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                record(line, self.position);
            }
            self.position += 1;
            read += 1;
        }
        read
    }
}
