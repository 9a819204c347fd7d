//! A strict parser of the Prometheus text exposition format (0.0.4), for checking `/metrics` pages: every
//! sample belongs to a family declared with `# TYPE` before it, names and labels follow the grammar, label
//! values use only the three escapes, no series appears twice, counters end in `_total`, and histograms
//! have cumulative buckets ending in `le="+Inf"` equal to their `_count`.
//!
//! Why not `prometheus-parse`: it reads scrapes leniently (a line it does not match is skipped, labels are
//! taken up to the first `}`, a series may repeat, a sample needs no `# TYPE`), and its last release is from
//! 2023 with chrono and regex behind it. This parser exists to refuse exactly what that one lets through.

use std::collections::{BTreeMap, BTreeSet};

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Labels by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A parsed page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Family name -> type (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    pub types: BTreeMap<String, String>,
    /// Family name -> help text.
    pub help: BTreeMap<String, String>,
    /// Samples in order.
    pub samples: Vec<Sample>,
}

impl Page {
    /// The value of the sample `name` whose labels include every pair of `labels`; panics unless exactly
    /// one matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one sample {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => {
            let ok = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
            if !ok {
                return Err(format!("bad value {s:?}"));
            }
            s.parse().map_err(|_| format!("bad value {s:?}"))
        }
    }
}

/// Parse `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?} in label {name}")),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err("line break in a label value".into()),
                c => value.push(c),
            }
        }
        let end = end.ok_or(format!("unterminated value of label {name}"))?;
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The family a sample name belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return Some(base);
            }
        }
    }
    None
}

/// Parse and check a whole page.
pub fn parse(text: &str) -> Result<Page, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the page does not end with a line feed".into());
    }
    let mut page = Page::default();
    let mut series = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_name(name, true) {
                        return Err(at("bad metric name".into()));
                    }
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if page
                        .samples
                        .iter()
                        .any(|s| family_of(&s.name, &page.types) == Some(name) || s.name == name)
                    {
                        return Err(at("TYPE after samples of its family".into()));
                    }
                    if page.types.insert(name.into(), kind.into()).is_some() {
                        return Err(at("TYPE declared twice".into()));
                    }
                    if kind == "counter" && !name.ends_with("_total") {
                        return Err(at("a counter's name should end in _total".into()));
                    }
                }
                (Some("HELP"), Some(name), help) => {
                    if !is_name(name, true) {
                        return Err(at("bad metric name".into()));
                    }
                    if page
                        .help
                        .insert(name.into(), help.unwrap_or("").into())
                        .is_some()
                    {
                        return Err(at("HELP given twice".into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("expected one space before the value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &page.types)
            .ok_or_else(|| at("sample of an undeclared family (no # TYPE before it)".into()))?;
        if name.ends_with("_bucket") && family != name && !labels.contains_key("le") {
            return Err(at("histogram bucket without le".into()));
        }
        if !series.insert((name.to_string(), labels.clone())) {
            return Err(at("series given twice".into()));
        }
        page.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&page)?;
    Ok(page)
}

/// Buckets are cumulative and end in `+Inf` equal to `_count`, per label set.
fn check_histograms(page: &Page) -> Result<(), String> {
    for (family, _) in page.types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in page.samples.iter().filter(|s| s.name == bucket) {
            let mut key = s.labels.clone();
            let le = key.remove("le").unwrap_or_default();
            groups
                .entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value));
        }
        for (labels, buckets) in groups {
            for pair in buckets.windows(2) {
                if pair[1].0 <= pair[0].0 || pair[1].1 < pair[0].1 {
                    return Err(format!(
                        "{family}{labels:?}: buckets not increasing: {pair:?}"
                    ));
                }
            }
            let last = buckets.last().ok_or("no buckets")?;
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no le=\"+Inf\" bucket"));
            }
            let count = page
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .ok_or(format!("{family}{labels:?}: no _count"))?;
            if count.value != last.1 {
                return Err(format!(
                    "{family}{labels:?}: +Inf bucket {} != count {}",
                    last.1, count.value
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_page() {
        let page = parse(concat!(
            "# HELP a_total Things.\n# TYPE a_total counter\na_total{k=\"x\\\"y\"} 3\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n",
            "# TYPE g gauge\ng 1e3 1700000000000\n",
        ))
        .expect("valid");
        assert_eq!(page.value("a_total", &[("k", "x\"y")]), 3.0);
        assert_eq!(page.value("g", &[]), 1000.0);
    }

    #[test]
    fn bad_pages() {
        for bad in [
            "a 1\n",
            "# TYPE a gauge\na 1",
            "# TYPE a gauge\na{b=c} 1\n",
            "# TYPE a gauge\na{b=\"\\t\"} 1\n",
            "# TYPE a gauge\na 1\na 2\n",
            "# TYPE a gauge\na  1\n",
            "# TYPE a gauge\na one\n",
            "# TYPE a counter\na 1\n",
            "# TYPE a gauge\n# TYPE a gauge\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 2\n",
            "# TYPE 1a gauge\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
