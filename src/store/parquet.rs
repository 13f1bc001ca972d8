//! Our tables as Parquet files, written and read through the `parquet` crate (the Arrow
//! project's Rust implementation, its low-level column writers and readers). This module
//! owns how every Parquet file of a results folder is laid out: format 2.x (v2 data pages),
//! zstd pages, dictionary encoding for the columns where it pays, min/max statistics per
//! column chunk and page, one row group per `Table` handed to the writer, every column
//! OPTIONAL (nulls are real: a failed request has no TTFT), absolute instants as
//! `TIMESTAMP(NANOS, UTC)`.
//!
//! Callers build a [`Table`] of typed [`Column`]s; [`read`] gives the same back.

use anyhow::{Context, Result, bail};
use parquet::basic::{Compression, Encoding, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type};
use std::collections::HashSet;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// zstd's level for every page: level 3 (zstd's default) gets within a few per cent of
/// level 9's size on our tables at a fraction of the time.
const ZSTD_LEVEL: i32 = 3;

/// Below this many rows in its first row group, a table keeps min/max statistics per
/// column chunk only, without the page index.
const SMALL_TABLE_ROWS: usize = 4096;

/// A column of values, `None` for null.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
    Bool(Vec<Option<bool>>),
    /// Instants in nanoseconds since the Unix epoch, stored as `TIMESTAMP(NANOS, UTC)`.
    Timestamp(Vec<Option<i64>>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::I64(v) | Column::Timestamp(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` as an integer (`I64` and `Timestamp` columns).
    pub fn i64_at(&self, row: usize) -> Option<i64> {
        match self {
            Column::I64(v) | Column::Timestamp(v) => v.get(row).copied().flatten(),
            _ => None,
        }
    }

    pub fn f64_at(&self, row: usize) -> Option<f64> {
        match self {
            Column::F64(v) => v.get(row).copied().flatten(),
            _ => None,
        }
    }

    pub fn str_at(&self, row: usize) -> Option<&str> {
        match self {
            Column::Str(v) => v.get(row).and_then(|s| s.as_deref()),
            _ => None,
        }
    }

    pub fn bool_at(&self, row: usize) -> Option<bool> {
        match self {
            Column::Bool(v) => v.get(row).copied().flatten(),
            _ => None,
        }
    }

    /// Same kind of column, so two row groups of one file agree.
    fn kind(&self) -> Kind {
        match self {
            Column::I64(_) => Kind::I64,
            Column::F64(_) => Kind::F64,
            Column::Str(_) => Kind::Str,
            Column::Bool(_) => Kind::Bool,
            Column::Timestamp(_) => Kind::Timestamp,
        }
    }

    /// Whether a dictionary pays for this column: text with repeats (status, metric names,
    /// label values), numbers with few distinct values (token counts, engine ranks).
    /// Continuous figures (latencies in ms, instants) are left to the fallback encodings:
    /// DELTA_BINARY_PACKED for integers, BYTE_STREAM_SPLIT for doubles. So are integers
    /// that mostly repeat or step evenly (an event's request id and index, its tokens):
    /// their deltas pack into almost no bits, with no value hashed to build a dictionary.
    fn dictionary_pays(&self) -> bool {
        if let Column::I64(v) = self
            && steps_evenly(v)
        {
            return false;
        }
        let few = |distinct: usize, n: usize| n > 0 && distinct * 4 <= n;
        match self {
            Column::Str(v) => {
                let n = v.iter().flatten().count();
                let d: HashSet<&str> = v.iter().flatten().map(String::as_str).collect();
                few(d.len(), n)
            }
            Column::I64(v) => {
                let n = v.iter().flatten().count();
                let d: HashSet<i64> = v.iter().flatten().copied().collect();
                few(d.len(), n)
            }
            Column::F64(v) => {
                let n = v.iter().flatten().count();
                let d: HashSet<u64> = v.iter().flatten().map(|x| x.to_bits()).collect();
                few(d.len(), n)
            }
            Column::Bool(_) | Column::Timestamp(_) => false,
        }
    }

    fn definition_levels(&self) -> Vec<i16> {
        fn defs<T>(v: &[Option<T>]) -> Vec<i16> {
            v.iter().map(|x| i16::from(x.is_some())).collect()
        }
        match self {
            Column::I64(v) | Column::Timestamp(v) => defs(v),
            Column::F64(v) => defs(v),
            Column::Str(v) => defs(v),
            Column::Bool(v) => defs(v),
        }
    }
}

/// Whether at least 9 in 10 of the present values continue their predecessors' step (the
/// same delta as the one before): runs of one value, counters, ids in blocks.
fn steps_evenly(v: &[Option<i64>]) -> bool {
    let values: Vec<i64> = v.iter().flatten().copied().collect();
    if values.len() < 3 {
        return false;
    }
    let breaks = values
        .windows(3)
        .filter(|w| w[2].wrapping_sub(w[1]) != w[1].wrapping_sub(w[0]))
        .count();
    breaks * 10 <= values.len() - 2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    I64,
    F64,
    Str,
    Bool,
    Timestamp,
}

impl Kind {
    fn field(self, name: &str) -> Result<Type> {
        let (physical, logical) = match self {
            Kind::I64 => (Physical::INT64, None),
            Kind::F64 => (Physical::DOUBLE, None),
            Kind::Str => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            Kind::Bool => (Physical::BOOLEAN, None),
            Kind::Timestamp => (
                Physical::INT64,
                Some(LogicalType::timestamp(true, TimeUnit::NANOS)),
            ),
        };
        Ok(Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()?)
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

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// `next`'s rows after this table's: the row groups of one file, so the same columns.
    fn append(&mut self, next: Table) {
        for ((_, mine), (_, more)) in self.columns.iter_mut().zip(next.columns) {
            match (mine, more) {
                (Column::I64(a), Column::I64(b)) | (Column::Timestamp(a), Column::Timestamp(b)) => {
                    a.extend(b)
                }
                (Column::F64(a), Column::F64(b)) => a.extend(b),
                (Column::Str(a), Column::Str(b)) => a.extend(b),
                (Column::Bool(a), Column::Bool(b)) => a.extend(b),
                _ => unreachable!("the row groups of one file have its schema's columns"),
            }
        }
    }

    fn kinds(&self) -> Vec<(String, Kind)> {
        self.columns
            .iter()
            .map(|(n, c)| (n.clone(), c.kind()))
            .collect()
    }
}

/// Write `table` to `path` as one row group (atomically: a temporary file renamed into place).
pub fn write(path: &Path, table: &Table) -> Result<()> {
    let mut w = FileWriter::create(path)?;
    w.row_group(table)?;
    w.finish()
}

type Writer = SerializedFileWriter<BufWriter<std::fs::File>>;

/// A Parquet file written row group by row group, so a table larger than memory (one row
/// per content event of a long run) never has to be held whole. Atomic: the rows go to a
/// temporary file that `finish` renames into place. The first row group fixes the
/// columns, their types and which of them are dictionary-encoded.
pub struct FileWriter {
    /// Opened at the first row group, with the columns it fixed.
    out: Option<(Writer, Vec<(String, Kind)>)>,
    tmp: PathBuf,
    path: PathBuf,
}

impl FileWriter {
    pub fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            out: None,
            tmp: path.with_extension("parquet.tmp"),
            path: path.to_path_buf(),
        })
    }

    /// Append `table` as one row group; every group has the first one's columns.
    pub fn row_group(&mut self, table: &Table) -> Result<()> {
        self.row_group_inner(table)
            .with_context(|| format!("writing `{}`", self.tmp.display()))
    }

    fn row_group_inner(&mut self, table: &Table) -> Result<()> {
        let rows = table.rows();
        if let Some((name, _)) = table.columns.iter().find(|(_, c)| c.len() != rows) {
            bail!("column `{name}` differs in length from the others");
        }
        if self.out.is_none() {
            let f = std::fs::File::create(&self.tmp)
                .with_context(|| format!("cannot create `{}`", self.tmp.display()))?;
            let w = SerializedFileWriter::new(
                BufWriter::with_capacity(1 << 20, f),
                schema(table)?,
                Arc::new(properties(table)),
            )?;
            self.out = Some((w, table.kinds()));
        }
        let (w, kinds) = self.out.as_mut().expect("opened above");
        if *kinds != table.kinds() {
            bail!("a row group with other columns than the first");
        }
        let mut group = w.next_row_group()?;
        for (_, col) in &table.columns {
            let mut cw = group
                .next_column()?
                .context("more columns than the schema")?;
            let defs = col.definition_levels();
            match col {
                Column::I64(v) | Column::Timestamp(v) => {
                    let vals: Vec<i64> = v.iter().flatten().copied().collect();
                    cw.typed::<Int64Type>()
                        .write_batch(&vals, Some(&defs), None)?;
                }
                Column::F64(v) => {
                    let vals: Vec<f64> = v.iter().flatten().copied().collect();
                    cw.typed::<DoubleType>()
                        .write_batch(&vals, Some(&defs), None)?;
                }
                Column::Str(v) => {
                    let vals: Vec<ByteArray> = v
                        .iter()
                        .flatten()
                        .map(|s| ByteArray::from(s.as_bytes().to_vec()))
                        .collect();
                    cw.typed::<ByteArrayType>()
                        .write_batch(&vals, Some(&defs), None)?;
                }
                Column::Bool(v) => {
                    let vals: Vec<bool> = v.iter().flatten().copied().collect();
                    cw.typed::<BoolType>()
                        .write_batch(&vals, Some(&defs), None)?;
                }
            }
            cw.close()?;
        }
        group.close()?;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let Some((w, _)) = self.out else {
            bail!(
                "`{}`: a Parquet file needs at least one row group to know its columns",
                self.path.display()
            );
        };
        let f = w
            .into_inner()
            .and_then(|b| b.into_inner().map_err(|e| e.into_error().into()))
            .with_context(|| format!("writing `{}`", self.tmp.display()))?;
        f.sync_data()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot write `{}`", self.path.display()))
    }
}

fn schema(table: &Table) -> Result<Arc<Type>> {
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut seen = HashSet::new();
    for (name, col) in &table.columns {
        if !seen.insert(name.as_str()) {
            bail!("two columns named `{name}`");
        }
        fields.push(Arc::new(col.kind().field(name)?));
    }
    Ok(Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?,
    ))
}

/// Format 2.x, zstd, statistics (per page for large tables), and per column: a dictionary where it pays (judged on
/// the first row group), else DELTA_BINARY_PACKED integers and BYTE_STREAM_SPLIT doubles,
/// the encodings zstd does best on for sorted instants and noisy figures.
fn properties(table: &Table) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
        ))
        .set_created_by(concat!("vllm-loadtest version ", env!("CARGO_PKG_VERSION")).into());
    // page statistics and their page index let a reader skip pages of a large table; on a
    // small one (runs.parquet: a row per cell, 100+ columns) they would outweigh the data
    b = if table.rows() >= SMALL_TABLE_ROWS {
        b.set_statistics_enabled(EnabledStatistics::Page)
    } else {
        b.set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
    };
    for (name, col) in &table.columns {
        let path = ColumnPath::from(name.as_str());
        let dict = col.dictionary_pays();
        b = b.set_column_dictionary_enabled(path.clone(), dict);
        if !dict && matches!(col, Column::F64(_)) {
            b = b.set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    b.build()
}

/// The number of rows a file holds, from its footer alone.
pub fn rows(path: &Path) -> Result<usize> {
    let f =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let r =
        SerializedFileReader::new(f).with_context(|| format!("reading `{}`", path.display()))?;
    Ok(r.metadata().file_metadata().num_rows() as usize)
}

/// A whole file read back: every column, every row group in order. Columns whose type is
/// none of ours (another writer's file) are an error naming them.
pub fn read(path: &Path) -> Result<Table> {
    let mut whole: Option<Table> = None;
    for_each_group(path, None, |group| {
        match &mut whole {
            None => whole = Some(group),
            Some(t) => t.append(group),
        }
        Ok(())
    })?;
    match whole {
        Some(t) => Ok(t),
        // no row group at all: the columns, empty
        None => Ok(Table {
            columns: opened(path)?.1,
        }),
    }
}

/// Each row group of a file in order, as a table of its own with the columns named in
/// `only` (all of them for `None`): a file of any length is read one group's memory at a
/// time, and a reader that needs three columns of five decodes three. A column in `only`
/// that the file lacks is an error naming it.
pub fn for_each_group(
    path: &Path,
    only: Option<&[&str]>,
    mut f: impl FnMut(Table) -> Result<()>,
) -> Result<()> {
    let (reader, columns) = opened(path)?;
    let wanted: Vec<usize> = match only {
        None => (0..columns.len()).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                columns
                    .iter()
                    .position(|(c, _)| c == n)
                    .with_context(|| format!("`{}` has no column `{n}`", path.display()))
            })
            .collect::<Result<_>>()?,
    };
    let meta = reader.metadata();
    let descr = meta.file_metadata().schema_descr();
    for g in 0..meta.num_row_groups() {
        let group = reader.get_row_group(g)?;
        let rows = group.metadata().num_rows() as usize;
        let mut table = Table::default();
        for &i in &wanted {
            let (name, empty) = &columns[i];
            let mut col = empty.clone();
            let optional = descr.column(i).max_def_level() == 1;
            read_chunk(group.get_column_reader(i)?, rows, optional, &mut col).with_context(
                || {
                    format!(
                        "reading `{}`: column `{name}`, row group {g}",
                        path.display()
                    )
                },
            )?;
            table.push(name, col);
        }
        f(table)?;
    }
    Ok(())
}

/// A file open for reading, and its columns (empty), each typed as ours.
type Opened = (SerializedFileReader<std::fs::File>, Vec<(String, Column)>);

fn opened(path: &Path) -> Result<Opened> {
    let f =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let reader =
        SerializedFileReader::new(f).with_context(|| format!("reading `{}`", path.display()))?;
    let columns =
        empty_columns(&reader).with_context(|| format!("reading `{}`", path.display()))?;
    Ok((reader, columns))
}

fn empty_columns(reader: &SerializedFileReader<std::fs::File>) -> Result<Vec<(String, Column)>> {
    let descr = reader.metadata().file_metadata().schema_descr();
    let mut columns: Vec<(String, Column)> = Vec::new();
    for c in descr.columns() {
        if c.max_rep_level() > 0 || c.max_def_level() > 1 {
            bail!("column `{}` is nested: not one of our tables", c.path());
        }
        let timestamp = matches!(c.logical_type_ref(), Some(LogicalType::Timestamp { .. }));
        let col = match (c.physical_type(), timestamp) {
            (Physical::INT64, false) => Column::I64(Vec::new()),
            (Physical::INT64, true) => Column::Timestamp(Vec::new()),
            (Physical::DOUBLE, _) => Column::F64(Vec::new()),
            (Physical::BYTE_ARRAY, _) => Column::Str(Vec::new()),
            (Physical::BOOLEAN, _) => Column::Bool(Vec::new()),
            (t, _) => bail!("column `{}` has type {t}: not one of our tables", c.path()),
        };
        columns.push((c.name().to_string(), col));
    }
    Ok(columns)
}

/// Append one column chunk of `rows` rows to `col`, nulls where the definition level says.
fn read_chunk(reader: ColumnReader, rows: usize, optional: bool, col: &mut Column) -> Result<()> {
    fn spread<T: Clone>(values: Vec<T>, defs: &[i16], optional: bool, out: &mut Vec<Option<T>>) {
        if !optional {
            out.extend(values.into_iter().map(Some));
            return;
        }
        let mut it = values.into_iter();
        out.extend(defs.iter().map(|&d| if d == 1 { it.next() } else { None }));
    }
    macro_rules! chunk {
        ($r:expr, $out:expr, $map:expr) => {{
            let mut r = $r;
            let (mut values, mut defs) = (Vec::new(), Vec::new());
            let mut read = 0;
            while read < rows {
                let (records, _, _) = r.read_records(
                    rows - read,
                    optional.then_some(&mut defs),
                    None,
                    &mut values,
                )?;
                if records == 0 {
                    bail!("ended after {read} of {rows} rows");
                }
                read += records;
            }
            spread(
                values.into_iter().map($map).collect(),
                &defs,
                optional,
                $out,
            );
        }};
    }
    match (reader, col) {
        (ColumnReader::Int64ColumnReader(r), Column::I64(out) | Column::Timestamp(out)) => {
            chunk!(r, out, |x: i64| x)
        }
        (ColumnReader::DoubleColumnReader(r), Column::F64(out)) => chunk!(r, out, |x: f64| x),
        (ColumnReader::BoolColumnReader(r), Column::Bool(out)) => chunk!(r, out, |x: bool| x),
        (ColumnReader::ByteArrayColumnReader(r), Column::Str(out)) => {
            chunk!(r, out, |x: ByteArray| String::from_utf8_lossy(x.data())
                .into_owned())
        }
        _ => bail!("a column chunk of another type than its schema"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::default();
        t.push("id", Column::I64((0..200).map(Some).collect()));
        t.push(
            "ms",
            Column::F64(
                (0..200)
                    .map(|i| (i % 7 != 0).then_some(i as f64 * 0.37))
                    .collect(),
            ),
        );
        t.push(
            "status",
            Column::Str(
                (0..200)
                    .map(|i| Some(if i % 10 == 0 { "timeout" } else { "ok" }.to_string()))
                    .collect(),
            ),
        );
        t.push(
            "in_window",
            Column::Bool((0..200).map(|i| (i != 3).then_some(i % 2 == 0)).collect()),
        );
        t.push(
            "t",
            Column::Timestamp(
                (0..200)
                    .map(|i| Some(1_700_000_000_000_000_000 + i))
                    .collect(),
            ),
        );
        t
    }

    /// `sample()` written twice, as two row groups, into a folder of the test's own: the
    /// folder, the file and the table.
    fn written_twice(test: &str) -> (std::path::PathBuf, std::path::PathBuf, Table) {
        let dir = std::env::temp_dir().join(format!("pq-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let t = sample();
        let mut w = FileWriter::create(&path).unwrap();
        w.row_group(&t).unwrap();
        w.row_group(&t).unwrap();
        w.finish().unwrap();
        (dir, path, t)
    }

    #[test]
    fn a_table_reads_back_as_written_across_row_groups() {
        let (dir, path, t) = written_twice("whole");
        assert!(!path.with_extension("parquet.tmp").exists());
        let back = read(&path).unwrap();
        assert_eq!(back.rows(), 400);
        for ((n, c), (m, d)) in t.columns.iter().zip(&back.columns) {
            assert_eq!(n, m);
            let twice = match c {
                Column::I64(v) => Column::I64([v.clone(), v.clone()].concat()),
                Column::F64(v) => Column::F64([v.clone(), v.clone()].concat()),
                Column::Str(v) => Column::Str([v.clone(), v.clone()].concat()),
                Column::Bool(v) => Column::Bool([v.clone(), v.clone()].concat()),
                Column::Timestamp(v) => Column::Timestamp([v.clone(), v.clone()].concat()),
            };
            assert_eq!(&twice, d, "{n}");
        }
        // the file says what it is: zstd, statistics, timestamps typed, the status dictionary
        let r = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let g = r.metadata().row_group(0);
        for c in g.columns() {
            assert!(
                matches!(c.compression(), Compression::ZSTD(_)),
                "{:?}",
                c.column_path()
            );
            assert!(c.statistics().is_some(), "{:?}", c.column_path());
        }
        assert!(
            g.column(2).dictionary_page_offset().is_some(),
            "status has a dictionary"
        );
        assert!(
            g.column(1).dictionary_page_offset().is_none(),
            "ms has none"
        );
        let descr = r.metadata().file_metadata().schema_descr();
        assert_eq!(
            descr.column(4).logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::NANOS))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn integers_that_step_evenly_skip_the_dictionary_and_few_scattered_ones_keep_it() {
        // an event's request id in blocks, its index counting up: deltas pack to ~0 bits
        let blocks: Vec<Option<i64>> = (0..1000).map(|i| Some(i / 50)).collect();
        let counter: Vec<Option<i64>> = (0..1000).map(|i| Some(i % 100)).collect();
        // engine ranks in no order: few values, uneven steps
        let ranks: Vec<Option<i64>> = (0..1000).map(|i| Some((i * 7 % 13) % 4)).collect();
        assert!(steps_evenly(&blocks) && steps_evenly(&counter));
        assert!(!steps_evenly(&ranks));
        assert!(!Column::I64(blocks.clone()).dictionary_pays());
        assert!(Column::I64(ranks.clone()).dictionary_pays());
        // a lone value breaks three steps: one in 40 (7.5% broken) still steps evenly, one
        // in 20 (15%) does not
        let sparse: Vec<Option<i64>> = (0..1000).map(|i| Some(i64::from(i % 40 == 0))).collect();
        assert!(steps_evenly(&sparse));
        let dense: Vec<Option<i64>> = (0..1000).map(|i| Some(i64::from(i % 20 == 0))).collect();
        assert!(!steps_evenly(&dense));
        // and the file holds them as chosen, reading back the same
        let dir = std::env::temp_dir().join(format!("pq-unit3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let mut t = Table::default();
        t.push("id", Column::I64(blocks));
        t.push("rank", Column::I64(ranks));
        write(&path, &t).unwrap();
        let r = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let g = r.metadata().row_group(0);
        assert!(g.column(0).dictionary_page_offset().is_none());
        assert!(
            g.column(0)
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED)
        );
        assert!(g.column(1).dictionary_page_offset().is_some());
        assert_eq!(read(&path).unwrap().columns, t.columns);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn row_groups_read_one_at_a_time_with_the_columns_asked_for() {
        let (dir, path, t) = written_twice("groups");
        let mut groups = Vec::new();
        for_each_group(&path, Some(&["status", "id"]), |g| {
            groups.push(g);
            Ok(())
        })
        .unwrap();
        assert_eq!(groups.len(), 2);
        for g in &groups {
            let names: Vec<&str> = g.columns.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["status", "id"]);
            assert_eq!(g.column("id"), t.column("id"));
            assert_eq!(g.column("status"), t.column("status"));
        }
        let err = for_each_group(&path, Some(&["id", "latency"]), |_| Ok(())).unwrap_err();
        assert!(
            format!("{err:#}").contains("has no column `latency`"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_row_group_with_other_columns_is_refused() {
        let dir = std::env::temp_dir().join(format!("pq-unit2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = FileWriter::create(&dir.join("t.parquet")).unwrap();
        w.row_group(&sample()).unwrap();
        let mut other = Table::default();
        other.push("id", Column::F64(vec![Some(1.0)]));
        assert!(w.row_group(&other).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
