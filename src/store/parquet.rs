//! A small Parquet writer: row groups of one uncompressed PLAIN data page per column, every
//! column OPTIONAL (nulls are real: a failed request has no TTFT). Enough for pandas,
//! polars, DuckDB and Arrow to read our tables, without the arrow/parquet crates' build cost.
//!
//! Format notes (parquet-format `parquet.thrift`): the file is `PAR1`, the column chunks,
//! the Thrift-compact-encoded `FileMetaData`, its length (u32 LE) and `PAR1`. A v1 data page
//! holds the definition levels (RLE/bit-packed hybrid, bit width 1, u32 length prefix) then
//! the non-null values, PLAIN-encoded.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// A column of values, `None` for null.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::I64(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    fn physical_type(&self) -> i32 {
        match self {
            Column::Bool(_) => 0,
            Column::I64(_) => 2,
            Column::F64(_) => 5,
            Column::Str(_) => 6,
        }
    }

    fn present(&self) -> Vec<bool> {
        match self {
            Column::I64(v) => v.iter().map(Option::is_some).collect(),
            Column::F64(v) => v.iter().map(Option::is_some).collect(),
            Column::Str(v) => v.iter().map(Option::is_some).collect(),
            Column::Bool(v) => v.iter().map(Option::is_some).collect(),
        }
    }

    fn plain_values(&self, out: &mut Vec<u8>) {
        match self {
            Column::I64(v) => v
                .iter()
                .flatten()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Column::F64(v) => v
                .iter()
                .flatten()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Column::Str(v) => v.iter().flatten().for_each(|s| {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }),
            Column::Bool(v) => {
                let bits: Vec<bool> = v.iter().flatten().copied().collect();
                pack_bits(&bits, out);
            }
        }
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<(String, Column)>,
}

impl Table {
    pub fn push(&mut self, name: &str, col: Column) {
        self.columns.push((name.to_string(), col));
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map(|(_, c)| c.len()).unwrap_or(0)
    }
}

fn pack_bits(bits: &[bool], out: &mut Vec<u8>) {
    for chunk in bits.chunks(8) {
        let mut b = 0u8;
        for (i, &bit) in chunk.iter().enumerate() {
            b |= (bit as u8) << i;
        }
        out.push(b);
    }
}

/// Definition levels (0 = null, 1 = present) as one bit-packed run, with its length prefix.
fn definition_levels(present: &[bool], out: &mut Vec<u8>) {
    let mut run = Vec::new();
    let groups = present.len().div_ceil(8);
    varint(((groups as u64) << 1) | 1, &mut run);
    let mut padded = present.to_vec();
    padded.resize(groups * 8, false);
    pack_bits(&padded, &mut run);
    out.extend_from_slice(&(run.len() as u32).to_le_bytes());
    out.extend_from_slice(&run);
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Thrift compact protocol, just the parts the Parquet footer needs.
struct Thrift {
    out: Vec<u8>,
    last: Vec<i16>,
}

const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_STRUCT: u8 = 12;

impl Thrift {
    fn new() -> Self {
        Self {
            out: Vec::new(),
            last: vec![0],
        }
    }

    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last_mut().expect("in a struct");
        let delta = id - *last;
        if (1..=15).contains(&delta) {
            self.out.push(((delta as u8) << 4) | ty);
        } else {
            self.out.push(ty);
            varint(zigzag(id as i64), &mut self.out);
        }
        *last = id;
    }

    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, T_I32);
        varint(zigzag(v as i64), &mut self.out);
    }

    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, T_I64);
        varint(zigzag(v), &mut self.out);
    }

    fn string(&mut self, id: i16, s: &str) {
        self.field(id, T_BINARY);
        varint(s.len() as u64, &mut self.out);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn begin_struct(&mut self, id: i16) {
        self.field(id, T_STRUCT);
        self.last.push(0);
    }

    /// Start a list field; elements follow (structs via `begin_elem`).
    fn list(&mut self, id: i16, elem: u8, len: usize) {
        self.field(id, T_LIST);
        if len < 15 {
            self.out.push(((len as u8) << 4) | elem);
        } else {
            self.out.push(0xF0 | elem);
            varint(len as u64, &mut self.out);
        }
    }

    fn begin_elem(&mut self) {
        self.last.push(0);
    }

    fn end_struct(&mut self) {
        self.out.push(0);
        self.last.pop();
    }

    fn elem_i32(&mut self, v: i32) {
        varint(zigzag(v as i64), &mut self.out);
    }

    fn elem_string(&mut self, s: &str) {
        varint(s.len() as u64, &mut self.out);
        self.out.extend_from_slice(s.as_bytes());
    }
}

const PLAIN: i32 = 0;
const RLE: i32 = 3;

/// Write `table` to `path` (atomically: a temporary file renamed into place).
pub fn write(path: &Path, table: &Table) -> Result<()> {
    let mut w = FileWriter::create(path)?;
    w.row_group(table)?;
    w.finish()
}

/// A Parquet file written row group by row group, so a table larger than memory (one row
/// per content event of a long run) never has to be held whole. Atomic: the rows go to a
/// temporary file that `finish` renames into place.
pub struct FileWriter {
    enc: Encoder<std::io::BufWriter<std::fs::File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl FileWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = path.with_extension("parquet.tmp");
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create `{}`", tmp.display()))?;
        Ok(Self {
            enc: Encoder::new(std::io::BufWriter::with_capacity(1 << 20, f))?,
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Append `table` as one row group; every group has the first one's columns.
    pub fn row_group(&mut self, table: &Table) -> Result<()> {
        self.enc
            .row_group(table)
            .with_context(|| format!("writing `{}`", self.tmp.display()))
    }

    pub fn finish(self) -> Result<()> {
        let f = self
            .enc
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .with_context(|| format!("writing `{}`", self.tmp.display()))?;
        f.sync_data()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot write `{}`", self.path.display()))
    }
}

/// The whole file in memory (tests, small tables).
pub fn encode(table: &Table) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new()).expect("writing to memory");
    e.row_group(table).expect("one table is one schema");
    e.finish().expect("writing to memory")
}

/// Where one column's chunk of one row group sits in the file.
struct Chunk {
    offset: i64,
    size: i64,
}

struct RowGroup {
    rows: i64,
    chunks: Vec<Chunk>,
}

/// The Parquet encoding proper, onto any byte sink.
struct Encoder<W: Write> {
    out: W,
    pos: i64,
    /// Column name, physical type, is a string: fixed by the first row group.
    schema: Option<Vec<(String, i32, bool)>>,
    groups: Vec<RowGroup>,
}

impl<W: Write> Encoder<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(b"PAR1")?;
        Ok(Self {
            out,
            pos: 4,
            schema: None,
            groups: Vec::new(),
        })
    }

    fn row_group(&mut self, table: &Table) -> std::io::Result<()> {
        let rows = table.rows();
        assert!(
            table.columns.iter().all(|(_, c)| c.len() == rows),
            "parquet table columns differ in length"
        );
        let schema: Vec<(String, i32, bool)> = table
            .columns
            .iter()
            .map(|(n, c)| (n.clone(), c.physical_type(), matches!(c, Column::Str(_))))
            .collect();
        match &self.schema {
            None => self.schema = Some(schema),
            Some(s) => assert!(
                *s == schema,
                "a row group with other columns than the first"
            ),
        }
        let mut chunks = Vec::new();
        for (_, col) in &table.columns {
            let mut data = Vec::new();
            definition_levels(&col.present(), &mut data);
            col.plain_values(&mut data);
            let mut h = Thrift::new();
            h.i32(1, 0); // DATA_PAGE
            h.i32(2, data.len() as i32);
            h.i32(3, data.len() as i32);
            h.begin_struct(5);
            h.i32(1, rows as i32);
            h.i32(2, PLAIN);
            h.i32(3, RLE);
            h.i32(4, RLE);
            h.end_struct();
            h.out.push(0);
            self.out.write_all(&h.out)?;
            self.out.write_all(&data)?;
            let size = (h.out.len() + data.len()) as i64;
            chunks.push(Chunk {
                offset: self.pos,
                size,
            });
            self.pos += size;
        }
        self.groups.push(RowGroup {
            rows: rows as i64,
            chunks,
        });
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        let schema = self.schema.take().unwrap_or_default();
        let total_rows: i64 = self.groups.iter().map(|g| g.rows).sum();
        let mut m = Thrift::new();
        m.i32(1, 1);
        m.list(2, T_STRUCT, schema.len() + 1);
        m.begin_elem();
        m.string(4, "schema");
        m.i32(5, schema.len() as i32);
        m.end_struct();
        for (name, ty, is_str) in &schema {
            m.begin_elem();
            m.i32(1, *ty);
            m.i32(3, 1); // OPTIONAL
            m.string(4, name);
            if *is_str {
                m.i32(6, 0); // converted type UTF8
                m.begin_struct(10); // logical type: STRING
                m.begin_struct(1);
                m.end_struct();
                m.end_struct();
            }
            m.end_struct();
        }
        m.i64(3, total_rows);
        m.list(4, T_STRUCT, self.groups.len());
        for g in &self.groups {
            m.begin_elem();
            m.list(1, T_STRUCT, schema.len());
            let mut total = 0i64;
            for ((name, ty, _), chunk) in schema.iter().zip(&g.chunks) {
                m.begin_elem();
                m.i64(2, chunk.offset);
                m.begin_struct(3);
                m.i32(1, *ty);
                m.list(2, T_I32, 2);
                m.elem_i32(PLAIN);
                m.elem_i32(RLE);
                m.list(3, T_BINARY, 1);
                m.elem_string(name);
                m.i32(4, 0); // UNCOMPRESSED
                m.i64(5, g.rows);
                m.i64(6, chunk.size);
                m.i64(7, chunk.size);
                m.i64(9, chunk.offset);
                m.end_struct();
                m.end_struct();
                total += chunk.size;
            }
            m.i64(2, total);
            m.i64(3, g.rows);
            m.end_struct();
        }
        m.string(
            6,
            concat!("vllm-loadtest version ", env!("CARGO_PKG_VERSION")),
        );
        m.out.push(0);
        self.out.write_all(&m.out)?;
        self.out.write_all(&(m.out.len() as u32).to_le_bytes())?;
        self.out.write_all(b"PAR1")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thrift_field_headers_use_deltas_and_long_form() {
        let mut t = Thrift::new();
        t.i32(1, 5);
        t.i32(17, -1);
        assert_eq!(t.out, vec![0x15, 0x0a, 0x05, 0x22, 0x01]);
    }

    #[test]
    fn definition_levels_are_one_bitpacked_run() {
        let mut out = Vec::new();
        definition_levels(&[true, false, true], &mut out);
        // length 2, header (1 group << 1 | 1) = 3, bits 0b101
        assert_eq!(out, vec![2, 0, 0, 0, 3, 0b101]);
    }

    #[test]
    fn file_has_magic_and_footer_length() {
        let mut t = Table::default();
        t.push("a", Column::I64(vec![Some(1), None]));
        let b = encode(&t);
        assert_eq!(&b[..4], b"PAR1");
        assert_eq!(&b[b.len() - 4..], b"PAR1");
        let len = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap()) as usize;
        assert!(len > 0 && len < b.len());
    }
}
