//! Experiment files, stage one: YAML text (plus `--set` overrides) to checked parameters.
//! Unknown keys, wrong types, out-of-range values, missing files and contradictions are all
//! collected, each with the file, line and column of its key and a hint where one is known.

use super::fields::{self, Field, Kind, SECTIONS, Section, TOP};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Parameters by field name: defaults, then the sections' values.
pub type Params = BTreeMap<&'static str, Value>;

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: Option<String>,
    pub repeats: u32,
    pub base: Params,
    /// Matrix dimensions in file order, each a non-empty list of checked values.
    pub matrix: Vec<(&'static str, Vec<Value>)>,
    /// The document as run (overrides applied, relative paths resolved), saved beside results.
    pub resolved: Value,
    /// A `search:` section: the rates are probed, not listed (`experiment::search`).
    pub search: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// 1-based line and column of the key, when it can be found in the text.
    pub at: Option<(usize, usize)>,
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match d.at {
                Some((l, c)) => write!(f, "experiment `{}` line {l}, column {c}: ", self.file)?,
                None => write!(f, "experiment `{}`: ", self.file)?,
            }
            if d.path.is_empty() {
                write!(f, "{}", d.message)?;
            } else {
                write!(f, "`{}`: {}", d.path, d.message)?;
            }
            if let Some(h) = &d.hint {
                write!(f, "\n  hint: {h}")?;
            }
        }
        if self.items.len() > 1 {
            write!(
                f,
                "\n{} errors in experiment `{}`",
                self.items.len(),
                self.file
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Where a key is written: the first line `key:` inside `section:` (or at the top level).
fn locate(text: &str, section: Option<&str>, key: &str) -> Option<(usize, usize)> {
    let mut inside = section.is_none();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(s) = section {
            if indent == 0 {
                inside = trimmed
                    .strip_prefix(s)
                    .is_some_and(|r| r.trim_start().starts_with(':'));
                if inside {
                    continue;
                }
            }
            if !inside {
                continue;
            }
        } else if indent != 0 {
            continue;
        }
        if trimmed
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
        {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

struct Ctx<'a> {
    text: &'a str,
    overridden: Vec<String>,
    items: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, section: Option<&str>, key: &str, message: String, hint: Option<String>) {
        let path = match section {
            Some(s) => format!("{s}.{key}"),
            None => key.to_string(),
        };
        let at = if self.overridden.contains(&path) {
            None
        } else {
            locate(self.text, section, key)
        };
        let message = if self.overridden.contains(&path) {
            format!("{message} (set by `--set {path}=…`)")
        } else {
            message
        };
        self.items.push(Diagnostic {
            at,
            path,
            message,
            hint,
        });
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("the text `{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

/// The most cells one experiment plans: at a minute each, a week of running.
pub const MAX_CELLS: usize = 10_000;

/// An experiment's name becomes a folder under `--output`: one plain path component, so
/// `name: ../../etc/x` cannot write outside it.
fn check_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 100 || name.starts_with('.') || !name.chars().all(plain) {
        return Err(format!("`{name}` cannot name a results folder"));
    }
    Ok(())
}

/// Check one value against its kind; `Err` says what was expected and what was found.
pub fn check(kind: Kind, v: &Value) -> Result<(), String> {
    let found = describe(v);
    match kind {
        Kind::Str => v
            .as_str()
            .map(|_| ())
            .ok_or(format!("expected text, found {found}")),
        Kind::Bool => v
            .as_bool()
            .map(|_| ())
            .ok_or(format!("expected true or false, found {found}")),
        Kind::Int(min) => match v.as_i64() {
            Some(n) if n >= min => super::fields::check_number(kind, n as f64),
            Some(n) => Err(format!("must be at least {min}, found {n}")),
            None => Err(format!("expected a whole number, found {found}")),
        },
        Kind::Num { .. } => match v.as_f64() {
            Some(x) => super::fields::check_number(kind, x),
            None => Err(format!("expected a number, found {found}")),
        },
        Kind::Rate => match (v.as_f64(), v.as_str()) {
            (Some(x), _) => {
                super::fields::check_number(kind, x).map_err(|e| format!("requests per second {e}"))
            }
            (None, Some("inf")) => Ok(()),
            _ => Err(format!(
                "expected requests per second or `inf`, found {found}"
            )),
        },
        Kind::Bound => match (v.as_f64(), v.as_str()) {
            (Some(x), _) if x > 0.0 && x.is_finite() => Ok(()),
            (None, Some("inf")) => Ok(()),
            _ => Err(format!(
                "expected a positive number or `inf` (no bound), found {found}"
            )),
        },
        Kind::Enum(choices) => match v.as_str() {
            Some(s) if choices.contains(&s) => Ok(()),
            _ => Err(format!(
                "expected one of {}, found {found}",
                choices.join(", ")
            )),
        },
        Kind::StrList => match v.as_sequence() {
            Some(items) if !items.is_empty() && items.iter().all(|x| x.is_string()) => Ok(()),
            _ => Err(format!("expected a non-empty list of text, found {found}")),
        },
        Kind::StrMap => match v.as_mapping() {
            Some(m)
                if m.iter().all(|(k, v)| {
                    k.is_string() && (v.is_string() || v.is_number() || v.is_bool())
                }) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "expected a mapping of names to values, found {found}"
            )),
        },
    }
}

/// Apply `--set section.key=value` (YAML value) overrides to the document.
fn apply_overrides(
    doc: &mut Value,
    overrides: &[String],
    items: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut done = Vec::new();
    for o in overrides {
        let Some((path, val)) = o.split_once('=') else {
            items.push(Diagnostic {
                at: None,
                path: String::new(),
                message: format!("`--set {o}`: expected `KEY=VALUE`"),
                hint: Some(
                    "e.g. `--set load.duration_s=5` or `--set matrix.request_rate=[10,20]`".into(),
                ),
            });
            continue;
        };
        let value: Value = serde_yaml::from_str(val).unwrap_or(Value::String(val.to_string()));
        let parts: Vec<&str> = path.split('.').collect();
        let Some(root) = doc.as_mapping_mut() else {
            return done;
        };
        match parts.as_slice() {
            [key] => {
                root.insert(Value::String(key.to_string()), value);
            }
            [section, key] => {
                let entry = root
                    .entry(Value::String(section.to_string()))
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if entry.is_null() {
                    *entry = Value::Mapping(Mapping::new());
                }
                if let Some(m) = entry.as_mapping_mut() {
                    m.insert(Value::String(key.to_string()), value);
                }
            }
            _ => {
                items.push(Diagnostic {
                    at: None,
                    path: path.to_string(),
                    message: format!("`--set {o}`: a key is `name` or `section.name`"),
                    hint: None,
                });
                continue;
            }
        }
        done.push(path.to_string());
    }
    done
}

/// Parse and check an experiment. `base_dir` resolves relative file paths.
pub fn parse(
    text: &str,
    file: &str,
    base_dir: &Path,
    overrides: &[String],
) -> Result<Experiment, Diagnostics> {
    let fail = |items: Vec<Diagnostic>| Diagnostics {
        file: file.to_string(),
        items,
    };
    let mut doc = read_yaml(text).map_err(|d| fail(vec![d]))?;
    let mut items = Vec::new();
    let overridden = apply_overrides(&mut doc, overrides, &mut items);
    let mut cx = Ctx {
        text,
        overridden,
        items,
    };
    let Some(root) = doc.as_mapping().cloned() else {
        return Err(fail(vec![Diagnostic {
            at: Some((1, 1)),
            path: String::new(),
            message: "an experiment is a mapping of keys (name, server, workload, load, matrix, …)"
                .into(),
            hint: None,
        }]));
    };
    let mut e = Collected {
        name: None,
        description: None,
        repeats: 1,
        base: defaults(),
        matrix: Vec::new(),
    };
    for (k, v) in &root {
        let Some(key) = k.as_str() else {
            cx.err(
                None,
                "?",
                format!("keys must be text, found {}", describe(k)),
                None,
            );
            continue;
        };
        if let Some(f) = TOP.iter().find(|f| f.name == key) {
            e.top_level(&mut cx, f, v);
        } else if let Some(s) = fields::section(key) {
            e.section(&mut cx, s, v);
        } else if key == "matrix" {
            e.matrix(&mut cx, v);
        } else {
            cx.err(
                None,
                key,
                format!("unknown field `{key}`"),
                unknown_top_hint(key),
            );
        }
    }
    let search = root.contains_key(fields::SEARCH);
    if search {
        // the section's defaults, only where it is present
        for f in fields::section(fields::SEARCH).map_or(&[][..], |s| s.fields) {
            if let Some(d) = f.default {
                e.base
                    .entry(f.name)
                    .or_insert_with(|| serde_yaml::from_str(d).expect("valid default"));
            }
        }
        for p in super::search::check(&e.base, &e.matrix, e.repeats) {
            cx.err(p.section, p.key, p.message, Some(p.hint));
        }
    }
    in_section_and_matrix(&mut cx, &root, &e.matrix);
    if e.name.is_none() {
        cx.items.push(Diagnostic {
            at: Some((1, 1)),
            path: "name".into(),
            message: "missing".into(),
            hint: Some("give the experiment a name, e.g. `name: saturation`".into()),
        });
    }
    cross_checks(&mut cx, &e.base, &e.matrix, base_dir, search);
    count_cells(&mut cx, &e.matrix, e.repeats);
    if !cx.items.is_empty() {
        return Err(fail(cx.items));
    }
    resolve_paths(&mut e.base, &mut e.matrix, base_dir);
    let resolved = resolved_document(
        &e.name,
        &e.description,
        e.repeats,
        &e.base,
        &e.matrix,
        &root,
    );
    Ok(Experiment {
        name: e.name.unwrap_or_default(),
        description: e.description,
        repeats: e.repeats,
        base: e.base,
        matrix: e.matrix,
        resolved,
        search,
    })
}

/// The document, or where its YAML breaks. An empty file is an empty mapping.
fn read_yaml(text: &str) -> Result<Value, Diagnostic> {
    match serde_yaml::from_str(text) {
        Ok(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Ok(v) => Ok(v),
        Err(e) => Err(Diagnostic {
            at: e.location().map(|l| (l.line(), l.column())),
            path: String::new(),
            message: format!("not valid YAML: {e}"),
            hint: Some("check the indentation and the `key: value` pairs around that line".into()),
        }),
    }
}

/// Every field's default from the table: what a file does not set.
fn defaults() -> Params {
    let mut base: Params = BTreeMap::new();
    for s in SECTIONS.iter().filter(|s| s.name != fields::SEARCH) {
        for f in s.fields {
            if let Some(d) = f.default {
                base.insert(f.name, serde_yaml::from_str(d).expect("valid default"));
            }
        }
    }
    base
}

/// What the file says, checked key by key as it is read.
struct Collected {
    name: Option<String>,
    description: Option<String>,
    repeats: u32,
    base: Params,
    matrix: Vec<(&'static str, Vec<Value>)>,
}

impl Collected {
    /// `name`, `description`, `repeats`.
    fn top_level(&mut self, cx: &mut Ctx, f: &Field, v: &Value) {
        let key = f.name;
        if let Err(m) = check(f.kind, v) {
            cx.err(None, key, m, None);
            return;
        }
        match key {
            "name" => match v.as_str().map(check_name) {
                Some(Err(m)) => cx.err(
                    None,
                    key,
                    m,
                    Some(
                        "letters, digits, `.`, `_` and `-`: it names a folder under `--output`"
                            .into(),
                    ),
                ),
                _ => self.name = v.as_str().map(str::to_owned),
            },
            "description" => self.description = v.as_str().map(str::to_owned),
            "repeats" => self.repeats = v.as_i64().unwrap_or(1) as u32,
            _ => {}
        }
    }

    /// One section's fields, each checked against its kind.
    fn section(&mut self, cx: &mut Ctx, s: &Section, v: &Value) {
        let key = s.name;
        let Some(m) = v.as_mapping() else {
            if !v.is_null() {
                cx.err(
                    None,
                    key,
                    format!(
                        "expected a mapping of {key} settings, found {}",
                        describe(v)
                    ),
                    None,
                );
            }
            return;
        };
        for (fk, fv) in m {
            let fname = fk.as_str().unwrap_or("?");
            match s.fields.iter().find(|f| f.name == fname) {
                Some(f) => match check(f.kind, fv) {
                    Ok(()) => {
                        self.base.insert(f.name, fv.clone());
                    }
                    Err(msg) => cx.err(Some(key), fname, msg, Some(f.doc.to_string())),
                },
                None => {
                    let hint = unknown_hint(fname, Some(s.name), s.fields);
                    cx.err(Some(key), fname, format!("unknown field `{fname}`"), hint);
                }
            }
        }
    }

    /// The matrix: each dimension a known, variable field with values of its kind.
    fn matrix(&mut self, cx: &mut Ctx, v: &Value) {
        let key = "matrix";
        let Some(m) = v.as_mapping() else {
            cx.err(
                None,
                key,
                format!(
                    "expected a mapping of parameter: [values], found {}",
                    describe(v)
                ),
                None,
            );
            return;
        };
        if m.is_empty() {
            cx.err(None, key, "the matrix is empty".into(), Some("give at least one dimension, e.g. `request_rate: [10, 20]`, or remove `matrix`".into()));
        }
        for (mk, mv) in m {
            let mname = mk.as_str().unwrap_or("?");
            if let Some(dimension) = matrix_dimension(cx, mname, mv) {
                self.matrix.push(dimension);
            }
        }
    }
}

/// One matrix dimension checked: a known field that may vary, with values of its kind.
fn matrix_dimension(cx: &mut Ctx, mname: &str, mv: &Value) -> Option<(&'static str, Vec<Value>)> {
    let Some((_, f)) = fields::find(mname) else {
        let all: Vec<&Field> = SECTIONS
            .iter()
            .flat_map(|s| s.fields.iter())
            .filter(|f| f.matrix)
            .collect();
        let hint = fields::suggest(mname, all.iter().map(|f| f.name))
            .map(|s| format!("did you mean `{s}`?"));
        cx.err(
            Some("matrix"),
            mname,
            format!("unknown parameter `{mname}`"),
            hint,
        );
        return None;
    };
    if !f.matrix {
        cx.err(
            Some("matrix"),
            mname,
            format!("`{mname}` cannot vary across cells"),
            Some("set it once in its section".into()),
        );
        return None;
    }
    let values = match mv {
        Value::Sequence(vs) => vs.clone(),
        single => vec![single.clone()],
    };
    if values.is_empty() {
        cx.err(
            Some("matrix"),
            mname,
            "has no values".into(),
            Some(format!("e.g. `{mname}: [1, 2]`")),
        );
        return None;
    }
    for val in &values {
        if let Err(msg) = check(f.kind, val) {
            cx.err(Some("matrix"), mname, msg, Some(f.doc.to_string()));
            return None;
        }
    }
    // the same value twice is the same cell twice (and, for a server parameter, the same
    // server configuration split in two): a typo, or a wish for `repeats`
    if let Some((_, v)) = values
        .iter()
        .enumerate()
        .find(|(i, v)| values[..*i].contains(v))
    {
        cx.err(
            Some("matrix"),
            mname,
            format!("lists `{}` twice", super::plan::scalar(v)),
            Some("list each value once; `repeats: N` measures every cell N times".into()),
        );
        return None;
    }
    Some((f.name, values))
}

/// An unknown top-level key: a field of a section written at the top, or a typo.
fn unknown_top_hint(key: &str) -> Option<String> {
    let top_names: Vec<&str> = TOP
        .iter()
        .map(|f| f.name)
        .chain(SECTIONS.iter().map(|s| s.name))
        .chain(["matrix"])
        .collect();
    match fields::find(key) {
        Some((s, _)) => Some(format!("`{key}` belongs under `{}:`", s.name)),
        None => {
            fields::suggest(key, top_names.iter().copied()).map(|s| format!("did you mean `{s}`?"))
        }
    }
}

/// Parameters given in a section and as a matrix dimension: ambiguous.
fn in_section_and_matrix(cx: &mut Ctx, root: &Mapping, matrix: &[(&'static str, Vec<Value>)]) {
    let in_sections: Vec<&str> = root
        .iter()
        .filter_map(|(k, v)| Some((fields::section(k.as_str()?)?, v.as_mapping()?)))
        .flat_map(|(_, m)| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .map(|k| fields::find(&k).map(|(_, f)| f.name).unwrap_or(""))
        .collect();
    for (m, _) in matrix {
        if in_sections.contains(m) {
            let (s, _) = fields::find(m).expect("known");
            cx.err(
                Some(s.name),
                m,
                "is also a matrix dimension".into(),
                Some("keep it in one place: the matrix lists every value".into()),
            );
        }
    }
}

/// Counted before anything is expanded: a 100×100×100 matrix took 4.6 GB to plan.
fn count_cells(cx: &mut Ctx, matrix: &[(&'static str, Vec<Value>)], repeats: u32) {
    let cells = matrix
        .iter()
        .fold(repeats as u128, |n, (_, vs)| n * vs.len().max(1) as u128);
    if cells > MAX_CELLS as u128 {
        cx.items.push(Diagnostic {
            at: None,
            path: "matrix".into(),
            message: format!(
                "{cells} cells ({} × {repeats} repeat(s)): more than the {MAX_CELLS} one experiment runs",
                matrix
                    .iter()
                    .map(|(k, vs)| format!("{} {k}", vs.len()))
                    .collect::<Vec<_>>()
                    .join(" × ")
            ),
            hint: Some("split it into several experiments, or thin a dimension".into()),
        });
    }
}

/// Relative paths made absolute, so the saved experiment runs from anywhere.
fn resolve_paths(base: &mut Params, matrix: &mut [(&'static str, Vec<Value>)], base_dir: &Path) {
    for key in ["tokenizer", "compose_file", "dataset_path", "ca_cert"] {
        if let Some(Value::String(p)) = base.get(key) {
            base.insert(key, Value::String(resolve(base_dir, p)));
        }
    }
    for (k, vs) in matrix.iter_mut() {
        if *k == "dataset_path" {
            for v in vs.iter_mut() {
                if let Value::String(p) = v {
                    *p = resolve(base_dir, p);
                }
            }
        }
        if *k == "profile" {
            for v in vs.iter_mut() {
                if let Value::String(p) = v {
                    *p = profile_file(p);
                }
            }
        }
    }
    if let Some(Value::String(p)) = base.get("profile") {
        base.insert("profile", Value::String(profile_file(p)));
    }
}

/// `server.profile` when it names a file that exists (relative to the working directory, as
/// `Profile::resolve` reads it), made absolute, so the saved experiment finds it from the
/// results folder too; a built-in name, or a file not there (its error comes later, with
/// the name as given), unchanged.
fn profile_file(p: &str) -> String {
    if vllm_sim::profile::NAMES.contains(&p) {
        return p.to_string();
    }
    match std::fs::canonicalize(p) {
        Ok(abs) if std::path::Path::new(p).is_file() => abs.to_string_lossy().into_owned(),
        _ => p.to_string(),
    }
}

fn unknown_hint(wrong: &str, section: Option<&str>, fields_here: &[Field]) -> Option<String> {
    if let Some(s) = fields::suggest(wrong, fields_here.iter().map(|f| f.name)) {
        return Some(format!("did you mean `{s}`?"));
    }
    if let Some((other, _)) = fields::find(&wrong.replace('-', "_"))
        && Some(other.name) != section
    {
        return Some(format!("`{wrong}` belongs under `{}:`", other.name));
    }
    let names: Vec<&str> = fields_here.iter().map(|f| f.name).collect();
    Some(format!("known fields here: {}", names.join(", ")))
}

/// `p` as an absolute path: relative to the experiment file's folder, and that folder taken
/// from the working directory when it was given relative (a saved experiment is read back
/// from the results folder, by `aggregate`, `report`, `--resume`, from any directory).
fn resolve(base: &Path, p: &str) -> String {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        p.to_string()
    } else {
        let base = std::fs::canonicalize(base)
            .or_else(|_| std::path::absolute(base))
            .unwrap_or_else(|_| base.to_path_buf());
        base.join(path).to_string_lossy().into_owned()
    }
}

fn present(base: &Params, matrix: &[(&str, Vec<Value>)], key: &str) -> bool {
    base.contains_key(key) || matrix.iter().any(|(k, _)| *k == key)
}

fn cross_checks(
    cx: &mut Ctx,
    base: &Params,
    matrix: &[(&'static str, Vec<Value>)],
    base_dir: &Path,
    search: bool,
) {
    let launcher = base
        .get("launcher")
        .and_then(Value::as_str)
        .unwrap_or("sim");
    let need = |cx: &mut Ctx, key: &str, why: &str| {
        if !base.contains_key(key) {
            cx.err(
                Some("server"),
                "launcher",
                format!("`launcher: {launcher}` needs `server.{key}`"),
                Some(why.to_string()),
            );
        }
    };
    match launcher {
        "external" => need(
            cx,
            "urls",
            "list the base URLs, e.g. `urls: [http://127.0.0.1:8000]`",
        ),
        "command" => need(
            cx,
            "command",
            "e.g. `command: vllm serve {model} --port {port} --data-parallel-size {dp}`",
        ),
        "compose" => need(
            cx,
            "compose_file",
            "e.g. `compose_file: deploy/docker-compose.yml`",
        ),
        _ => {}
    }
    let own_schedule = schedule_checks(cx, base, matrix);
    if !search && !own_schedule && !present(base, matrix, "request_rate") {
        cx.err(
            None,
            "load",
            "no `request_rate`".into(),
            Some("set `load.request_rate` or list rates under `matrix.request_rate`".into()),
        );
    }
    let f = |k: &str| base.get(k).and_then(Value::as_f64);
    let duration = f("duration_s");
    if duration.is_some() && base.contains_key("requests") {
        cx.err(
            Some("load"),
            "requests",
            "both `duration_s` and `requests` are set".into(),
            Some("a cell stops by time or by count: keep one".into()),
        );
    }
    let (warm, cool) = (f("warmup_s").unwrap_or(0.0), f("cooldown_s").unwrap_or(0.0));
    match duration {
        None if warm > 0.0 || cool > 0.0 => cx.err(
            Some("load"),
            "warmup_s",
            "warm-up and cool-down need `duration_s`".into(),
            None,
        ),
        Some(d) if warm + cool >= d => cx.err(
            Some("load"),
            "duration_s",
            format!("warm-up {warm} s + cool-down {cool} s leave nothing of {d} s to measure"),
            None,
        ),
        _ => {}
    }
    let rate_inf = base.get("request_rate").and_then(Value::as_str) == Some("inf")
        || matrix
            .iter()
            .any(|(k, vs)| *k == "request_rate" && vs.iter().any(|v| v.as_str() == Some("inf")));
    if rate_inf && duration.is_some() && !present(base, matrix, "max_concurrency") {
        cx.err(
            Some("load"),
            "duration_s",
            "a duration with request_rate `inf` needs `max_concurrency`".into(),
            Some("`max_concurrency: N` keeps N requests in flight for the duration (a closed loop); or give a finite rate".into()),
        );
    }
    let dataset = base
        .get("dataset")
        .and_then(Value::as_str)
        .unwrap_or("random");
    prefix_repetition_checks(cx, base, matrix, dataset);
    if !matches!(dataset, "random" | "prefix_repetition" | "multi_turn")
        && !present(base, matrix, "dataset_path")
    {
        cx.err(
            Some("workload"),
            "dataset",
            format!("`dataset: {dataset}` needs `dataset_path`"),
            None,
        );
    }
    let check_file = |cx: &mut Ctx, section: &str, key: &str, p: &str| {
        let path = Path::new(p);
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        };
        if !full.exists() {
            cx.err(
                Some(section),
                key,
                format!("`{}` does not exist", full.display()),
                Some("paths are relative to the experiment file".into()),
            );
        }
    };
    for (section, key) in [
        ("server", "tokenizer"),
        ("server", "compose_file"),
        ("server", "ca_cert"),
        ("workload", "dataset_path"),
    ] {
        if let Some(p) = base.get(key).and_then(Value::as_str) {
            check_file(cx, section, key, p);
        }
    }
    for (k, vs) in matrix {
        if *k == "dataset_path" {
            for v in vs {
                if let Some(p) = v.as_str() {
                    check_file(cx, "matrix", k, p);
                }
            }
        }
    }
}

/// `dataset: prefix_repetition` and its fields: each only where it means something, a
/// prefix of at least one token, and enough prompts to fill every group.
fn prefix_repetition_checks(
    cx: &mut Ctx,
    base: &Params,
    matrix: &[(&'static str, Vec<Value>)],
    dataset: &str,
) {
    // where a key was written, for the error's line
    let section = |key: &str| {
        if matrix.iter().any(|(k, _)| *k == key) {
            "matrix"
        } else {
            "workload"
        }
    };
    // every value a key takes: the base one, or each of the matrix
    let values = |key: &str| -> Vec<u64> {
        match matrix.iter().find(|(k, _)| *k == key) {
            Some((_, vs)) => vs.iter().filter_map(Value::as_u64).collect(),
            None => base.get(key).and_then(Value::as_u64).into_iter().collect(),
        }
    };
    let repetition = dataset == "prefix_repetition";
    let (theirs, others) = if repetition {
        (["input_len", "range_ratio"], "random")
    } else {
        (["num_prefixes", "suffix_len"], "prefix_repetition")
    };
    // set by the file (or `--set`): in the matrix, or a value other than the default
    let given = |key: &str| {
        let default = fields::find(key)
            .and_then(|(_, f)| f.default)
            .map(|d| serde_yaml::from_str::<Value>(d).expect("valid default"));
        matrix.iter().any(|(k, _)| *k == key) || base.get(key) != default.as_ref()
    };
    for key in theirs {
        if given(key) {
            cx.err(
                Some(section(key)),
                key,
                format!("`{key}` is for `dataset: {others}`, not `{dataset}`"),
                Some(if repetition {
                    "a prefix_repetition prompt is `prefix_len` shared tokens then `suffix_len` of its own: set those".into()
                } else {
                    "set `dataset: prefix_repetition` to send groups of prompts that share a prefix".into()
                }),
            );
        }
    }
    if !repetition {
        return;
    }
    if values("prefix_len").is_empty() || values("prefix_len").contains(&0) {
        // at the `prefix_len: 0` written, else at the `dataset` that needs one
        cx.err(
            Some(section("prefix_len")),
            if given("prefix_len") {
                "prefix_len"
            } else {
                "dataset"
            },
            "`dataset: prefix_repetition` needs a `prefix_len` of at least 1".into(),
            Some("e.g. `prefix_len: 256`: the tokens the prompts of a group share".into()),
        );
    }
    let prompts = base
        .get("num_prompts")
        .and_then(Value::as_u64)
        .unwrap_or(1000);
    let most = values("num_prefixes").into_iter().max().unwrap_or(10);
    if most > prompts {
        cx.err(
            Some(section("num_prefixes")),
            "num_prefixes",
            format!(
                "{most} prefix groups need at least as many prompts, `num_prompts` is {prompts}"
            ),
            Some("raise `workload.num_prompts` or use fewer prefixes".into()),
        );
    }
}

/// A trace replay and a ramp set their own schedule: no `request_rate` beside them, and
/// their own fields whole and consistent. Whether the cell has such a schedule.
fn schedule_checks(cx: &mut Ctx, base: &Params, matrix: &[(&'static str, Vec<Value>)]) -> bool {
    let trace = base.get("dataset").and_then(Value::as_str) == Some("trace");
    let ramp = present(base, matrix, "ramp_up_strategy");
    let num = |k: &str| base.get(k).and_then(Value::as_f64);
    let rate_at = if base.contains_key("request_rate") {
        Some("load")
    } else {
        matrix
            .iter()
            .any(|(k, _)| *k == "request_rate")
            .then_some("matrix")
    };
    if let (Some(section), true) = (rate_at, trace || ramp) {
        let (what, hint) = if trace {
            (
                "a trace replay sends on the trace's own schedule",
                "remove `request_rate`; `load.trace_speed` scales the trace's time (a list under `matrix.trace_speed` sweeps it)",
            )
        } else {
            (
                "a ramp sets its own rate",
                "remove `request_rate`: the rate moves from `ramp_up_start_rps` to `ramp_up_end_rps`",
            )
        };
        cx.err(
            Some(section),
            "request_rate",
            format!("`request_rate` does not apply: {what}"),
            Some(hint.into()),
        );
    }
    if trace && ramp {
        cx.err(
            Some("load"),
            "ramp_up_strategy",
            "a ramp and a trace replay are two schedules; a cell has one".into(),
            Some("drop the ramp, or use another dataset".into()),
        );
    }
    for key in ["duration_s", "requests"] {
        if trace && base.contains_key(key) {
            cx.err(
                Some("load"),
                key,
                format!("`{key}` does not apply: a trace replay ends with its window"),
                Some("choose the window with `trace_start_s` and `trace_end_s`".into()),
            );
        }
    }
    if !trace && base.contains_key("trace_end_s") {
        cx.err(
            Some("load"),
            "trace_end_s",
            "`trace_end_s` without `dataset: trace`".into(),
            None,
        );
    }
    if let (Some(s), Some(e)) = (num("trace_start_s"), num("trace_end_s"))
        && e <= s
    {
        cx.err(
            Some("load"),
            "trace_end_s",
            format!("the trace window [{s}, {e}) s is empty"),
            Some("`trace_end_s` must be after `trace_start_s`".into()),
        );
    }
    for key in ["ramp_up_start_rps", "ramp_up_end_rps"] {
        match (ramp, present(base, matrix, key)) {
            (true, false) => cx.err(
                Some("load"),
                "ramp_up_strategy",
                format!("a ramp needs `{key}`"),
                Some("e.g. `ramp_up_start_rps: 2` and `ramp_up_end_rps: 40`".into()),
            ),
            (false, true) => cx.err(
                Some("load"),
                key,
                format!("`{key}` without `ramp_up_strategy`"),
                Some("add `ramp_up_strategy: linear` (or `exponential`)".into()),
            ),
            _ => {}
        }
    }
    if let (Some(s), Some(e)) = (num("ramp_up_start_rps"), num("ramp_up_end_rps"))
        && s > e
    {
        cx.err(
            Some("load"),
            "ramp_up_start_rps",
            format!("the ramp starts at {s} req/s, above its end {e} req/s"),
            Some("a ramp rises (as vLLM's does): swap them".into()),
        );
    }
    trace || ramp
}

/// The experiment as it will run: every section with its effective values, the matrix.
fn resolved_document(
    name: &Option<String>,
    description: &Option<String>,
    repeats: u32,
    base: &Params,
    matrix: &[(&'static str, Vec<Value>)],
    root: &Mapping,
) -> Value {
    let mut doc = Mapping::new();
    doc.insert("name".into(), name.clone().unwrap_or_default().into());
    if let Some(d) = description {
        doc.insert("description".into(), d.clone().into());
    }
    doc.insert("repeats".into(), (repeats as u64).into());
    for s in SECTIONS {
        let mut m = Mapping::new();
        for f in s.fields {
            if matrix.iter().any(|(k, _)| *k == f.name) {
                continue;
            }
            if let Some(v) = base.get(f.name) {
                m.insert(f.name.into(), v.clone());
            }
        }
        if !m.is_empty() || root.contains_key(s.name) {
            doc.insert(s.name.into(), Value::Mapping(m));
        }
    }
    if !matrix.is_empty() {
        let mut m = Mapping::new();
        for (k, vs) in matrix {
            m.insert((*k).into(), Value::Sequence(vs.clone()));
        }
        doc.insert("matrix".into(), Value::Mapping(m));
    }
    Value::Mapping(doc)
}
