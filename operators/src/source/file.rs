//! Reading a JSON-lines file as blocks of lines (memory-mapped, shared by all workers).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::source::block::BlockReader;

/// The bytes of an input file, mapped once and shared by every worker of the process (or
/// held in memory, for benchmarks and tests).
#[derive(Clone)]
pub struct SharedFile {
    bytes: Arc<Backing>,
}

enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl SharedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> std::io::Result<SharedFile> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only; vigil never writes its input, and a file changed
        // underneath a run is outside what a batch job over a file can promise anyway.
        let bytes = unsafe { Mmap::map(&file)? };
        Ok(SharedFile { bytes: Arc::new(Backing::Mapped(bytes)) })
    }

    /// Input held in memory.
    pub fn from_vec(bytes: Vec<u8>) -> SharedFile {
        SharedFile { bytes: Arc::new(Backing::Owned(bytes)) }
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &*self.bytes {
            Backing::Mapped(map) => map,
            Backing::Owned(vec) => vec,
        }
    }
}

/// A reader over lines of a file; a final line without newline counts, a trailing newline
/// does not start another line. `\r\n` endings are accepted.
pub struct LineReader<B> {
    bytes: B,
    at: usize,
    line: u64,
}

impl<B: AsRef<[u8]>> LineReader<B> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: B) -> Self {
        LineReader { bytes, at: 0, line: 0 }
    }
}

impl AsRef<[u8]> for SharedFile {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl<B: AsRef<[u8]> + 'static> BlockReader for LineReader<B> {
    fn next_block(&mut self, len: usize, visit: bool, record: &mut dyn FnMut(&[u8], u64)) -> usize {
        let bytes = self.bytes.as_ref();
        let mut read = 0;
        while read < len && self.at < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[self.at..]).map_or(bytes.len(), |i| self.at + i);
            if visit {
                let line = &bytes[self.at..end];
                record(line.strip_suffix(b"\r").unwrap_or(line), self.line);
            }
            self.at = (end + 1).min(bytes.len());
            if end == bytes.len() {
                self.at = bytes.len();
            }
            self.line += 1;
            read += 1;
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &'static str, len: usize) -> Vec<Vec<(String, u64)>> {
        let mut reader = LineReader::new(text.as_bytes());
        let mut blocks = Vec::new();
        loop {
            let mut block = Vec::new();
            let n = reader.next_block(len, true, &mut |b, p| block.push((String::from_utf8_lossy(b).into_owned(), p)));
            if n == 0 {
                return blocks;
            }
            assert_eq!(n, block.len());
            blocks.push(block);
        }
    }

    #[test]
    fn blocks_of_lines_with_positions() {
        let blocks = lines("a\nb\r\n\nd", 2);
        assert_eq!(blocks, vec![vec![("a".into(), 0), ("b".into(), 1)], vec![("".into(), 2), ("d".into(), 3)]]);
        assert_eq!(lines("a\n", 5), vec![vec![("a".to_string(), 0)]]);
        assert!(lines("", 5).is_empty());
    }
}
