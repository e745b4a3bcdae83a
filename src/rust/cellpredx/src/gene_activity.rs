//! Gene activity: how accessible each gene's neighbourhood is in each cell, from a peak matrix or a
//! fragments file, following Signac's `GeneActivity()` (v1.17 defaults).
//!
//! - Gene body from the annotation (1-based, closed); `*` strand counts as `+`; an empty name is
//!   replaced by the gene ID.
//! - Filters, in order: biotypes, a gene list, then width (before extension) strictly below
//!   `max_width`; repeated names then get `.1`, `.2` suffixes like R's `make.unique`.
//! - The body is extended upstream (strand-aware: on `-` the end moves) and downstream, clipped
//!   at 1.
//! - From fragments, each fragment overlapping a region by at least 1 bp adds 1 to its cell (as
//!   Signac counts); from peaks, the counts of every peak overlapping the region are summed (an
//!   approximation of that). A peak or fragment over two genes counts for both.
//!
//! Overlaps use per-chromosome indexes sorted by start with a running maximum of the ends, so a
//! query costs a binary search plus the hits, never a scan of all genes.

use crate::error::{CellPredXError, Result};
use crate::io::{make_unique, thousands};
use crate::sparse::CsrMatrix;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Strand of a gene; `*` and `.` (unknown) count as `+`, as in Signac.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strand {
    Plus,
    Minus,
}

impl Strand {
    pub fn parse(s: &str) -> Option<Strand> {
        match s {
            "+" | "*" | "." | "" => Some(Strand::Plus),
            "-" => Some(Strand::Minus),
            _ => None,
        }
    }
}

/// Gene records, one per gene, in columns. Coordinates are 1-based and closed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneAnnotation {
    pub chrom: Vec<String>,
    pub start: Vec<u64>,
    pub end: Vec<u64>,
    pub strand: Vec<Strand>,
    pub gene_name: Vec<String>,
    pub gene_id: Vec<String>,
    pub gene_biotype: Vec<String>,
}

impl GeneAnnotation {
    pub fn len(&self) -> usize {
        self.chrom.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chrom.is_empty()
    }

    /// Builds an annotation from columns (as R hands them over), checking that they have one
    /// length, that coordinates are whole numbers with 1 <= start <= end, and that strands are
    /// `+`, `-` or `*`. Empty gene names become the gene ID.
    #[allow(clippy::too_many_arguments)]
    pub fn from_columns(
        chrom: Vec<String>,
        start: &[f64],
        end: &[f64],
        strand: &[String],
        gene_name: Vec<String>,
        gene_id: Vec<String>,
        gene_biotype: Vec<String>,
    ) -> Result<Self> {
        let n = chrom.len();
        for (what, len) in [
            ("start", start.len()),
            ("end", end.len()),
            ("strand", strand.len()),
            ("gene_name", gene_name.len()),
            ("gene_id", gene_id.len()),
            ("gene_biotype", gene_biotype.len()),
        ] {
            if len != n {
                return Err(CellPredXError::DimensionMismatch {
                    what: format!("gene annotation column '{what}' (one value per gene)"),
                    expected: n,
                    got: len,
                });
            }
        }
        let coordinate = |v: f64, what: &str, i: usize| -> Result<u64> {
            if v.is_finite() && v >= 1.0 && v.fract() == 0.0 && v < 1e15 {
                Ok(v as u64)
            } else {
                Err(CellPredXError::invalid(format!(
                    "gene annotation: {what} of gene {} is {v}; coordinates must be whole numbers of at least 1 (1-based)",
                    i + 1
                )))
            }
        };
        let mut annotation = GeneAnnotation { chrom, gene_name, gene_id, gene_biotype, ..Default::default() };
        for i in 0..n {
            let (s, e) = (coordinate(start[i], "start", i)?, coordinate(end[i], "end", i)?);
            if e < s {
                return Err(CellPredXError::invalid(format!(
                    "gene annotation: gene {} ('{}') ends at {e} before it starts at {s}",
                    i + 1,
                    annotation.gene_name[i]
                )));
            }
            let st = Strand::parse(&strand[i]).ok_or_else(|| {
                CellPredXError::invalid(format!(
                    "gene annotation: strand of gene {} is '{}'; expected '+', '-' or '*'",
                    i + 1,
                    strand[i]
                ))
            })?;
            annotation.start.push(s);
            annotation.end.push(e);
            annotation.strand.push(st);
        }
        annotation.fill_empty_names();
        Ok(annotation)
    }

    fn fill_empty_names(&mut self) {
        for (name, id) in self.gene_name.iter_mut().zip(&self.gene_id) {
            if name.is_empty() {
                name.clone_from(id);
            }
        }
    }

    fn push(&mut self, gene: RawGene) {
        self.chrom.push(gene.chrom);
        self.start.push(gene.start);
        self.end.push(gene.end);
        self.strand.push(gene.strand);
        self.gene_name.push(gene.name);
        self.gene_id.push(gene.id);
        self.gene_biotype.push(gene.biotype);
    }

    /// Reads a gene annotation file, plain or gzip (recognised by content): the tab-separated
    /// table the package ships (header `chrom start end strand gene_name gene_id gene_biotype`;
    /// `seqnames` and `gene_type` are accepted too), or GTF / GFF3, of which the gene-level
    /// records (`gene`, and Ensembl GFF3's `ncRNA_gene`) are taken. The file is streamed.
    pub fn read(path: &Path) -> Result<Self> {
        let mut reader = open_text(path)?;
        let mut line = String::new();
        let mut line_no = 0usize;
        // The first line that is neither blank nor a comment decides the format.
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
            line_no += 1;
            if read == 0 {
                return Err(CellPredXError::invalid(format!(
                    "{}: the gene annotation file has no records",
                    path.display()
                )));
            }
            let trimmed = line.trim_end_matches(['\n', '\r']);
            if !trimmed.trim().is_empty() && !trimmed.starts_with('#') {
                break;
            }
        }
        let first: Vec<&str> = line.trim_end_matches(['\n', '\r']).split('\t').collect();
        let mut annotation = if first.iter().any(|c| *c == "chrom" || *c == "seqnames") {
            read_annotation_table(path, &first, reader, line_no)?
        } else if first.len() == 9 {
            read_gtf_like(path, line.clone(), reader, line_no)?
        } else {
            return Err(CellPredXError::invalid(format!(
                "{}: not a gene annotation this package reads; expected a tab-separated table with the header 'chrom start end strand gene_name gene_id gene_biotype', or a GTF / GFF3 file (9 tab-separated columns), but line {line_no} has {} fields",
                path.display(),
                first.len()
            )));
        };
        if annotation.is_empty() {
            return Err(CellPredXError::invalid(format!(
                "{}: no gene records (a GTF / GFF3 file needs lines whose feature type is 'gene')",
                path.display()
            )));
        }
        annotation.fill_empty_names();
        Ok(annotation)
    }
}

struct RawGene {
    chrom: String,
    start: u64,
    end: u64,
    strand: Strand,
    name: String,
    id: String,
    biotype: String,
}

/// A text file, gunzipped on the fly when its first bytes are the gzip magic number;
/// multi-member (bgzip) files are read to the end.
fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path)
        .map_err(|e| CellPredXError::io(format!("cannot open {}", path.display()), e))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let head = reader
        .fill_buf()
        .map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::bufread::MultiGzDecoder::new(reader))))
    } else {
        Ok(Box::new(reader))
    }
}

fn line_error(path: &Path, line_no: usize, msg: impl std::fmt::Display) -> CellPredXError {
    CellPredXError::invalid(format!("{}: line {line_no}: {msg}", path.display()))
}

fn parse_coordinate(field: &str, what: &str, path: &Path, line_no: usize) -> Result<u64> {
    field
        .trim()
        .parse::<u64>()
        .map_err(|_| line_error(path, line_no, format!("{what} '{field}' is not a whole number")))
}

fn read_annotation_table(path: &Path, header: &[&str], reader: Box<dyn BufRead>, header_line: usize) -> Result<GeneAnnotation> {
    let find = |names: &[&str]| header.iter().position(|c| names.contains(c));
    let wanted: [&[&str]; 7] = [
        &["chrom", "seqnames"],
        &["start"],
        &["end"],
        &["strand"],
        &["gene_name"],
        &["gene_id"],
        &["gene_biotype", "gene_type"],
    ];
    let positions: Vec<Option<usize>> = wanted.iter().map(|names| find(names)).collect();
    let missing: Vec<&str> = wanted.iter().zip(&positions).filter(|(_, p)| p.is_none()).map(|(n, _)| n[0]).collect();
    if !missing.is_empty() {
        return Err(CellPredXError::invalid(format!(
            "{}: the gene annotation table lacks the column{} {}; it needs chrom, start, end, strand, gene_name, gene_id and gene_biotype",
            path.display(),
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        )));
    }
    let p: Vec<usize> = positions.into_iter().flatten().collect();
    let mut annotation = GeneAnnotation::default();
    let mut line_no = header_line;
    for line in reader.lines() {
        line_no += 1;
        let line = line.map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != header.len() {
            return Err(line_error(
                path,
                line_no,
                format!("{} tab-separated fields but the header has {}", fields.len(), header.len()),
            ));
        }
        let strand = Strand::parse(fields[p[3]])
            .ok_or_else(|| line_error(path, line_no, format!("strand '{}' is not '+', '-' or '*'", fields[p[3]])))?;
        let (start, end) =
            (parse_coordinate(fields[p[1]], "start", path, line_no)?, parse_coordinate(fields[p[2]], "end", path, line_no)?);
        check_span(start, end, path, line_no)?;
        annotation.push(RawGene {
            chrom: fields[p[0]].to_string(),
            start,
            end,
            strand,
            name: fields[p[4]].to_string(),
            id: fields[p[5]].to_string(),
            biotype: fields[p[6]].to_string(),
        });
    }
    Ok(annotation)
}

fn check_span(start: u64, end: u64, path: &Path, line_no: usize) -> Result<()> {
    if start == 0 || end < start {
        return Err(line_error(
            path,
            line_no,
            format!("the span {start}-{end} is not 1-based with start <= end"),
        ));
    }
    Ok(())
}

fn read_gtf_like(path: &Path, first_line: String, reader: Box<dyn BufRead>, first_line_no: usize) -> Result<GeneAnnotation> {
    let mut annotation = GeneAnnotation::default();
    let mut line_no = first_line_no;
    let mut handle = |line: &str, line_no: usize| -> Result<()> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 9 {
            return Err(line_error(path, line_no, format!("{} tab-separated fields; GTF / GFF3 lines have 9", fields.len())));
        }
        if fields[2] != "gene" && fields[2] != "ncRNA_gene" {
            return Ok(());
        }
        let (start, end) =
            (parse_coordinate(fields[3], "start", path, line_no)?, parse_coordinate(fields[4], "end", path, line_no)?);
        check_span(start, end, path, line_no)?;
        let strand = Strand::parse(fields[6])
            .ok_or_else(|| line_error(path, line_no, format!("strand '{}' is not '+', '-', '.' or '*'", fields[6])))?;
        let attributes = parse_attributes(fields[8]);
        let get = |keys: &[&str]| keys.iter().find_map(|k| attributes.get(*k)).cloned().unwrap_or_default();
        let mut id = get(&["gene_id", "ID"]);
        if let Some(stripped) = id.strip_prefix("gene:") {
            id = stripped.to_string();
        }
        annotation.push(RawGene {
            chrom: fields[0].to_string(),
            start,
            end,
            strand,
            name: get(&["gene_name", "Name"]),
            id,
            biotype: get(&["gene_biotype", "gene_type", "biotype"]),
        });
        Ok(())
    };
    handle(&first_line, line_no)?;
    for line in reader.lines() {
        line_no += 1;
        let line = line.map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
        handle(&line, line_no)?;
    }
    Ok(annotation)
}

/// GTF (`key "value"; key value;`) or GFF3 (`key=value;key=value`, percent-encoded) attributes.
/// The first value of a key wins.
fn parse_attributes(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for item in text.split(';') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let eq = item.find('=');
        let space = item.find(char::is_whitespace);
        let (key, value) = match (eq, space) {
            (Some(e), s) if s.is_none_or(|s| e < s) => (&item[..e], percent_decode(&item[e + 1..])),
            (_, Some(s)) => (&item[..s], item[s..].trim().trim_matches('"').to_string()),
            _ => continue,
        };
        out.entry(key.trim().to_string()).or_insert(value);
    }
    out
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Signac's `GeneActivity()` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneActivityOptions {
    /// Biotypes to keep; `None` keeps every gene.
    pub biotypes: Option<Vec<String>>,
    /// Gene names to keep (after empty names became IDs); `None` keeps every gene.
    pub features: Option<Vec<String>>,
    pub extend_upstream: u64,
    pub extend_downstream: u64,
    /// Genes at least this wide (end - start + 1, before extension) are dropped.
    pub max_width: u64,
}

impl Default for GeneActivityOptions {
    fn default() -> Self {
        GeneActivityOptions {
            biotypes: Some(vec!["protein_coding".to_string()]),
            features: None,
            extend_upstream: 2000,
            extend_downstream: 0,
            max_width: 500_000,
        }
    }
}

/// The genes kept and their extended regions (1-based, closed), in annotation order.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneRegions {
    /// Unique names (`make.unique` style).
    pub names: Vec<String>,
    pub ids: Vec<String>,
    pub chrom: Vec<String>,
    pub start: Vec<u64>,
    pub end: Vec<u64>,
}

impl GeneRegions {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Filters the annotation and extends the kept genes (see the module documentation).
pub fn gene_regions(annotation: &GeneAnnotation, options: &GeneActivityOptions) -> Result<GeneRegions> {
    let biotypes: Option<HashSet<&str>> = options.biotypes.as_ref().map(|b| b.iter().map(String::as_str).collect());
    let features: Option<HashSet<&str>> = options.features.as_ref().map(|f| f.iter().map(String::as_str).collect());
    let n = annotation.len();
    let by_biotype: Vec<usize> = (0..n)
        .filter(|&i| biotypes.as_ref().is_none_or(|b| b.contains(annotation.gene_biotype[i].as_str())))
        .collect();
    let by_feature: Vec<usize> = by_biotype
        .iter()
        .copied()
        .filter(|&i| features.as_ref().is_none_or(|f| f.contains(annotation.gene_name[i].as_str())))
        .collect();
    let kept: Vec<usize> = by_feature
        .iter()
        .copied()
        .filter(|&i| annotation.end[i] - annotation.start[i] + 1 < options.max_width)
        .collect();
    if kept.is_empty() {
        let biotype_text = match &options.biotypes {
            Some(b) => format!("{} with biotype {}", thousands(by_biotype.len()), b.join(" / ")),
            None => format!("{} of any biotype", thousands(by_biotype.len())),
        };
        return Err(CellPredXError::invalid(format!(
            "no gene is left after filtering: of {} genes in the annotation, {biotype_text}, {} of those in the gene list, {} of those narrower than {} bp; relax the filters",
            thousands(n),
            thousands(by_feature.len()),
            thousands(kept.len()),
            thousands(options.max_width as usize)
        )));
    }
    let mut regions = GeneRegions {
        names: make_unique(kept.iter().map(|&i| annotation.gene_name[i].clone()).collect()),
        ids: Vec::with_capacity(kept.len()),
        chrom: Vec::with_capacity(kept.len()),
        start: Vec::with_capacity(kept.len()),
        end: Vec::with_capacity(kept.len()),
    };
    for &i in &kept {
        let (before, after) = match annotation.strand[i] {
            Strand::Plus => (options.extend_upstream, options.extend_downstream),
            Strand::Minus => (options.extend_downstream, options.extend_upstream),
        };
        regions.ids.push(annotation.gene_id[i].clone());
        regions.chrom.push(annotation.chrom[i].clone());
        regions.start.push(annotation.start[i].saturating_sub(before).max(1));
        regions.end.push(annotation.end[i].saturating_add(after));
    }
    Ok(regions)
}

/// A genomic interval, 1-based and closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub chrom: String,
    pub start: u64,
    pub end: u64,
}

/// Parses a peak name `chr1-100-200`, `chr1:100-200` or `chr1_100_200` (the chromosome itself may
/// hold `_` or `-`: the last two separators split). The start is taken as 1-based.
pub fn parse_peak_name(name: &str) -> Option<Interval> {
    let is_sep = |c: char| c == '-' || c == ':' || c == '_';
    let last = name.rfind(is_sep)?;
    let middle = name[..last].rfind(is_sep)?;
    let chrom = &name[..middle];
    let (start, end) = (&name[middle + 1..last], &name[last + 1..]);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if chrom.is_empty() || !digits(start) || !digits(end) {
        return None;
    }
    let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
    (start <= end).then(|| Interval { chrom: chrom.to_string(), start, end })
}

/// Parses every peak name, or says which is the first that is not one.
pub fn parse_peak_names(names: &[String]) -> Result<Vec<Interval>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            parse_peak_name(name).ok_or_else(|| {
                CellPredXError::invalid(format!(
                    "peak name {} ('{name}') is not a genomic region; peak names must look like 'chr1-100-200', 'chr1:100-200' or 'chr1_100_200' (start <= end)",
                    i + 1
                ))
            })
        })
        .collect()
}

/// One chromosome's regions sorted by start, with the running maximum of their ends.
struct ChromIndex {
    starts: Vec<u64>,
    ends: Vec<u64>,
    max_end: Vec<u64>,
    genes: Vec<u32>,
}

/// Per-chromosome overlap index over the gene regions.
struct RegionIndex {
    chroms: HashMap<String, ChromIndex>,
}

impl RegionIndex {
    fn new(regions: &GeneRegions) -> Self {
        let mut by_chrom: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in regions.chrom.iter().enumerate() {
            by_chrom.entry(c.clone()).or_default().push(i);
        }
        let chroms = by_chrom
            .into_iter()
            .map(|(chrom, mut genes)| {
                genes.sort_by_key(|&g| (regions.start[g], g));
                let starts: Vec<u64> = genes.iter().map(|&g| regions.start[g]).collect();
                let ends: Vec<u64> = genes.iter().map(|&g| regions.end[g]).collect();
                let max_end = ends
                    .iter()
                    .scan(0u64, |m, &e| {
                        *m = (*m).max(e);
                        Some(*m)
                    })
                    .collect();
                let genes = genes.into_iter().map(|g| g as u32).collect();
                (chrom, ChromIndex { starts, ends, max_end, genes })
            })
            .collect();
        RegionIndex { chroms }
    }

    /// Appends to `out` the genes whose region overlaps [start, end] (1-based, closed) by at
    /// least 1 bp.
    fn overlaps(index: &ChromIndex, start: u64, end: u64, out: &mut Vec<u32>) {
        // Regions starting after `end` cannot overlap; of the others, walk back while some
        // earlier region may still reach `start` (the running maximum says when none can).
        let mut k = index.starts.partition_point(|&s| s <= end);
        while k > 0 {
            k -= 1;
            if index.max_end[k] < start {
                break;
            }
            if index.ends[k] >= start {
                out.push(index.genes[k]);
            }
        }
    }
}

/// Genes × cells activity, held as cells × genes CSR (a genes × cells `dgCMatrix`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneActivity {
    pub matrix: CsrMatrix,
    pub genes: Vec<String>,
    pub gene_ids: Vec<String>,
    /// Peaks (or fragments of the requested cells) that overlap at least one gene region.
    pub overlapping: usize,
}

/// Says whether the data's chromosomes can meet the annotation's at all, and if not whether the
/// cause is the `chr` prefix. `what` is "peaks" or "fragments".
fn check_chromosomes<'a>(what: &str, data_chroms: impl Iterator<Item = &'a str>, regions: &GeneRegions) -> Result<()> {
    let annotated: HashSet<&str> = regions.chrom.iter().map(String::as_str).collect();
    let mut distinct: Vec<&str> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for c in data_chroms {
        if seen.insert(c) {
            distinct.push(c);
        }
    }
    if distinct.is_empty() || distinct.iter().any(|c| annotated.contains(c)) {
        return Ok(());
    }
    let toggled = |c: &str| match c.strip_prefix("chr") {
        Some(rest) => rest.to_string(),
        None => format!("chr{c}"),
    };
    if let Some(c) = distinct.iter().find(|c| annotated.contains(toggled(c).as_str())) {
        let annotation_example = toggled(c);
        let hint = if c.starts_with("chr") {
            format!("remove the 'chr' prefix from the {what}' chromosome names, or use an annotation with UCSC-style names (e.g. a shipped genome)")
        } else {
            format!("add the 'chr' prefix to the {what}' chromosome names (e.g. '{c}' -> 'chr{c}'), or use an annotation with Ensembl-style names such as '{c}'")
        };
        return Err(CellPredXError::ChromosomeNaming {
            data: what.to_string(),
            data_example: c.to_string(),
            annotation_example,
            hint,
        });
    }
    let mut annotation_examples: Vec<&str> = annotated.into_iter().collect();
    annotation_examples.sort_unstable();
    annotation_examples.truncate(5);
    distinct.truncate(5);
    Err(CellPredXError::NoOverlap(format!(
        "no {what} chromosome is in the gene annotation ({what}: {}; annotation: {}); is the annotation for the right genome?",
        distinct.join(", "),
        annotation_examples.join(", ")
    )))
}

/// Gene activity from a peak matrix: `peaks` is cells × peaks (a peaks × cells `dgCMatrix`), with
/// one name per peak. Each gene's value in a cell is the sum of the counts of the peaks
/// overlapping its region.
pub fn gene_activity_from_peaks(peaks: &CsrMatrix, peak_names: &[String], regions: &GeneRegions) -> Result<GeneActivity> {
    if peak_names.len() != peaks.n_cols() {
        return Err(CellPredXError::DimensionMismatch {
            what: "peak names (one per peak)".into(),
            expected: peaks.n_cols(),
            got: peak_names.len(),
        });
    }
    let (non_finite, negative) = peaks.count_invalid_values();
    if non_finite + negative > 0 {
        return Err(CellPredXError::invalid(format!(
            "the peak matrix has {} negative and {} NaN or infinite values; it must hold counts",
            thousands(negative),
            thousands(non_finite)
        )));
    }
    let intervals = parse_peak_names(peak_names)?;
    check_chromosomes("peaks", intervals.iter().map(|p| p.chrom.as_str()), regions)?;
    let index = RegionIndex::new(regions);
    // Peaks -> genes once, as a compressed list.
    let mut peak_ptr = Vec::with_capacity(intervals.len() + 1);
    let mut peak_genes: Vec<u32> = Vec::new();
    peak_ptr.push(0usize);
    for p in &intervals {
        if let Some(ci) = index.chroms.get(&p.chrom) {
            RegionIndex::overlaps(ci, p.start, p.end, &mut peak_genes);
        }
        peak_ptr.push(peak_genes.len());
    }
    let overlapping = peak_ptr.windows(2).filter(|w| w[1] > w[0]).count();
    if overlapping == 0 {
        return Err(CellPredXError::NoOverlap(format!(
            "none of the {} peaks overlaps any of the {} gene regions; check that peaks and annotation are from the same genome build",
            thousands(intervals.len()),
            thousands(regions.len())
        )));
    }
    // One pass over the non-zeros, cell by cell, with a dense accumulator reset after each cell.
    let n_genes = regions.len();
    let mut acc = vec![0f64; n_genes];
    let mut touched_flag = vec![false; n_genes];
    let mut touched: Vec<u32> = Vec::new();
    let mut indptr = Vec::with_capacity(peaks.n_rows() + 1);
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    indptr.push(0usize);
    for cell in 0..peaks.n_rows() {
        let (cols, vals) = peaks.row(cell);
        for (&peak, &v) in cols.iter().zip(vals) {
            let peak = peak as usize;
            for &g in &peak_genes[peak_ptr[peak]..peak_ptr[peak + 1]] {
                if !touched_flag[g as usize] {
                    touched_flag[g as usize] = true;
                    touched.push(g);
                }
                acc[g as usize] += v as f64;
            }
        }
        touched.sort_unstable();
        for &g in &touched {
            let sum = acc[g as usize];
            if sum != 0.0 {
                indices.push(g);
                values.push(sum as f32);
            }
            acc[g as usize] = 0.0;
            touched_flag[g as usize] = false;
        }
        touched.clear();
        indptr.push(indices.len());
    }
    let matrix = CsrMatrix::try_new(peaks.n_rows(), n_genes, indptr, indices, values)?;
    Ok(GeneActivity { matrix, genes: regions.names.clone(), gene_ids: regions.ids.clone(), overlapping })
}

/// Gene activity from a fragments file (BED-like, tab-separated: chrom, start (0-based), end,
/// barcode, count; plain, gzip or bgzip; `#` lines skipped), for the given cells in that order:
/// each fragment of one of those cells that overlaps a gene region by at least 1 bp adds 1 to
/// the cell's count for that gene. Fragments of other barcodes are ignored. The file is
/// streamed, never held in memory.
pub fn gene_activity_from_fragments(path: &Path, cells: &[String], regions: &GeneRegions) -> Result<GeneActivity> {
    let mut cell_of: HashMap<&[u8], u32> = HashMap::with_capacity(cells.len());
    for (i, c) in cells.iter().enumerate() {
        if cell_of.insert(c.as_bytes(), i as u32).is_some() {
            return Err(CellPredXError::invalid(format!("cell '{c}' is requested more than once; cell names must be unique")));
        }
    }
    let index = RegionIndex::new(regions);
    let mut reader = open_text(path)?;
    let mut counts: Vec<HashMap<u32, u32>> = vec![HashMap::new(); cells.len()];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut line_no = 0usize;
    let mut chroms_seen: Vec<String> = Vec::new();
    let mut current_chrom: Vec<u8> = Vec::new();
    let mut current_index: Option<&ChromIndex> = None;
    let (mut fragments, mut of_cells, mut overlapping) = (0usize, 0usize, 0usize);
    let mut hits: Vec<u32> = Vec::new();
    let mut first_barcode: Option<String> = None;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() || text[0] == b'#' {
            continue;
        }
        let mut fields = text.split(|&b| b == b'\t');
        let (Some(chrom), Some(start), Some(end), Some(barcode)) = (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(line_error(path, line_no, "fewer than 4 tab-separated fields; a fragments file has chrom, start, end, barcode (and count)"));
        };
        fragments += 1;
        if first_barcode.is_none() {
            first_barcode = Some(String::from_utf8_lossy(barcode).into_owned());
        }
        if chrom != current_chrom.as_slice() {
            current_chrom.clear();
            current_chrom.extend_from_slice(chrom);
            let name = String::from_utf8_lossy(chrom).into_owned();
            current_index = index.chroms.get(&name);
            if !chroms_seen.contains(&name) {
                chroms_seen.push(name);
            }
        }
        let Some(&cell) = cell_of.get(barcode) else { continue };
        of_cells += 1;
        let number = |field: &[u8], what: &str| -> Result<u64> {
            std::str::from_utf8(field)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| line_error(path, line_no, format!("{what} '{}' is not a whole number", String::from_utf8_lossy(field))))
        };
        let (start, end) = (number(start, "start")?, number(end, "end")?);
        if end <= start {
            return Err(line_error(path, line_no, format!("fragment {start}-{end} ends before it starts (BED: 0-based start, end exclusive)")));
        }
        let Some(ci) = current_index else { continue };
        hits.clear();
        RegionIndex::overlaps(ci, start + 1, end, &mut hits);
        if !hits.is_empty() {
            overlapping += 1;
        }
        let cell_counts = &mut counts[cell as usize];
        for &g in &hits {
            *cell_counts.entry(g).or_insert(0) += 1;
        }
    }
    if fragments == 0 {
        return Err(CellPredXError::invalid(format!("{}: the fragments file has no fragments", path.display())));
    }
    if of_cells == 0 {
        return Err(CellPredXError::invalid(format!(
            "{}: none of the {} cells has a fragment in this file (its barcodes look like '{}', the cells like '{}'); the cell names must be the fragment barcodes",
            path.display(),
            thousands(cells.len()),
            first_barcode.unwrap_or_default(),
            cells.first().map_or("", String::as_str)
        )));
    }
    check_chromosomes("fragments", chroms_seen.iter().map(String::as_str), regions)?;
    if overlapping == 0 {
        return Err(CellPredXError::NoOverlap(format!(
            "none of the {} fragments of the requested cells overlaps any of the {} gene regions; check that fragments and annotation are from the same genome build",
            thousands(of_cells),
            thousands(regions.len())
        )));
    }
    let mut indptr = Vec::with_capacity(cells.len() + 1);
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    indptr.push(0usize);
    for cell_counts in counts {
        let mut entries: Vec<(u32, u32)> = cell_counts.into_iter().collect();
        entries.sort_unstable();
        for (g, c) in entries {
            indices.push(g);
            values.push(c as f32);
        }
        indptr.push(indices.len());
    }
    let matrix = CsrMatrix::try_new(cells.len(), regions.len(), indptr, indices, values)?;
    Ok(GeneActivity { matrix, genes: regions.names.clone(), gene_ids: regions.ids.clone(), overlapping })
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_support::scratch_dir;
    use std::io::Write;

    /// chrom, start, end, strand, name, id, biotype: every case the filters and extension meet.
    fn annotation() -> GeneAnnotation {
        type Row = (&'static str, f64, f64, &'static str, &'static str, &'static str, &'static str);
        let genes: &[Row] = &[
            ("chr1", 1001.0, 2000.0, "+", "A", "ID_A", "protein_coding"), // extension clipped at 1: [1, 2000]
            ("chr1", 10001.0, 20000.0, "*", "B", "ID_B", "protein_coding"), // '*' = '+': [8001, 20000]
            ("chr1", 30001.0, 40000.0, "-", "C", "ID_C", "protein_coding"), // '-': [30001, 42000]
            ("chr1", 100001.0, 600000.0, "+", "D", "ID_D", "protein_coding"), // 500,000 wide: dropped
            ("chr1", 100001.0, 599999.0, "+", "E", "ID_E", "protein_coding"), // 499,999 wide: [98001, 599999]
            ("chr1", 50001.0, 60000.0, "+", "F", "ID_F", "lincRNA"),      // [48001, 60000]
            ("chr2", 1001.0, 5000.0, "-", "", "ID_G", "protein_coding"),    // name -> ID_G: [1001, 7000]
            ("chr2", 20001.0, 25000.0, "+", "Dup", "ID_H", "lincRNA"),      // [18001, 25000]
            ("chr2", 30001.0, 35000.0, "-", "Dup", "ID_I", "protein_coding"), // [30001, 37000]
            ("chr2", 40001.0, 41000.0, "+", "Dup", "ID_J", "protein_coding"), // [38001, 41000]
        ];
        let col = |f: fn(&Row) -> &'static str| genes.iter().map(|g| f(g).to_string()).collect::<Vec<_>>();
        GeneAnnotation::from_columns(
            col(|g| g.0),
            &genes.iter().map(|g| g.1).collect::<Vec<_>>(),
            &genes.iter().map(|g| g.2).collect::<Vec<_>>(),
            &col(|g| g.3),
            col(|g| g.4),
            col(|g| g.5),
            col(|g| g.6),
        )
        .unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    // 1-based closed; the comment says what each one hits with the default settings.
    const PEAKS: [&str; 12] = [
        "chr1-500-600",      // 0: A (inside the clipped upstream extension)
        "chr1-7000-8001",    // 1: B by 1 bp at the region's start
        "chr1-6000-8000",    // 2: nothing (ends 1 bp before B's region)
        "chr1-19900-30100",  // 3: B and C
        "chr1-42000-42500",  // 4: C by 1 bp at the region's end (upstream of a '-' gene)
        "chr1-42001-42500",  // 5: nothing
        "chr1-55000-55100",  // 6: F (lincRNA) only
        "chr1-300000-300100", // 7: E (D is too wide)
        "chr2-6500-6600",    // 8: ID_G (upstream of a '-' gene)
        "chr2-36000-36100",  // 9: the protein-coding Dup on '-'
        "chr2-19000-19100",  // 10: the lincRNA Dup only
        "chr2-40500-40600",  // 11: the last Dup
    ];

    /// 3 cells x 12 peaks.
    fn peak_matrix() -> CsrMatrix {
        let mut dense = vec![0f64; 3 * 12];
        for (cell, peak, v) in [
            (0, 0, 1.0), (0, 1, 2.0), (0, 2, 5.0), (0, 3, 3.0), (0, 7, 1.0),
            (1, 3, 1.0), (1, 4, 4.0), (1, 5, 7.0), (1, 6, 2.0), (1, 8, 1.0), (1, 10, 2.0),
            (2, 9, 3.0), (2, 6, 1.0), (2, 11, 1.0),
        ] {
            dense[cell * 12 + peak] = v;
        }
        CsrMatrix::from_dense_row_major(3, 12, &dense).unwrap()
    }

    fn dense(m: &CsrMatrix) -> Vec<Vec<f32>> {
        (0..m.n_rows())
            .map(|r| {
                let mut row = vec![0f32; m.n_cols()];
                let (idx, vals) = m.row(r);
                for (&c, &v) in idx.iter().zip(vals) {
                    row[c as usize] = v;
                }
                row
            })
            .collect()
    }

    fn activity(options: &GeneActivityOptions) -> GeneActivity {
        let regions = gene_regions(&annotation(), options).unwrap();
        gene_activity_from_peaks(&peak_matrix(), &names(&PEAKS), &regions).unwrap()
    }

    #[test]
    fn gene_activity_regions_follow_strand_extension_clipping_and_width() {
        let r = gene_regions(&annotation(), &GeneActivityOptions::default()).unwrap();
        assert_eq!(r.names, ["A", "B", "C", "E", "ID_G", "Dup", "Dup.1"]);
        assert_eq!(r.ids, ["ID_A", "ID_B", "ID_C", "ID_E", "ID_G", "ID_I", "ID_J"]);
        assert_eq!(r.start, [1, 8001, 30001, 98001, 1001, 30001, 38001]);
        assert_eq!(r.end, [2000, 20000, 42000, 599999, 7000, 37000, 41000]);
        // Downstream moves the end of '+' genes and the start of '-' genes.
        let opts = GeneActivityOptions { extend_upstream: 500, extend_downstream: 100, ..Default::default() };
        let r = gene_regions(&annotation(), &opts).unwrap();
        assert_eq!((r.start[1], r.end[1]), (9501, 20100));
        assert_eq!((r.start[2], r.end[2]), (29901, 40500));
        // No extension at all leaves the gene bodies.
        let opts = GeneActivityOptions { extend_upstream: 0, ..Default::default() };
        let r = gene_regions(&annotation(), &opts).unwrap();
        assert_eq!((r.start[0], r.end[0]), (1001, 2000));
    }

    #[test]
    fn gene_activity_from_peaks_matches_hand_counts() {
        let a = activity(&GeneActivityOptions::default());
        assert_eq!(a.genes, ["A", "B", "C", "E", "ID_G", "Dup", "Dup.1"]);
        //          A    B    C    E    G    Dup  Dup.1
        assert_eq!(
            dense(&a.matrix),
            vec![
                vec![1.0, 5.0, 3.0, 1.0, 0.0, 0.0, 0.0], // p0 -> A; p1 (2) + p3 (3) -> B; p3 -> C; p7 -> E
                vec![0.0, 1.0, 5.0, 0.0, 1.0, 0.0, 0.0], // p3 -> B, C; p4 (4) -> C; p8 -> G; p5, p6, p10 nothing
                vec![0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.0],
            ]
        );
        // Peaks 0, 1, 3, 4, 7, 8, 9, 11 overlap a kept gene.
        assert_eq!(a.overlapping, 8);
        // Only stored non-zeros: zero sums are not kept.
        assert_eq!(a.matrix.nnz(), 9);
    }

    #[test]
    fn gene_activity_biotype_and_gene_list_filters_come_before_unique_names() {
        let all = activity(&GeneActivityOptions { biotypes: None, ..Default::default() });
        assert_eq!(all.genes, ["A", "B", "C", "E", "F", "ID_G", "Dup", "Dup.1", "Dup.2"]);
        assert_eq!(all.gene_ids[6..], ["ID_H", "ID_I", "ID_J"]);
        assert_eq!(
            dense(&all.matrix),
            vec![
                vec![1.0, 5.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                vec![0.0, 1.0, 5.0, 0.0, 2.0, 1.0, 2.0, 0.0, 0.0],
                vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 3.0, 1.0],
            ]
        );
        let lincs = activity(&GeneActivityOptions { biotypes: Some(names(&["lincRNA"])), ..Default::default() });
        assert_eq!(lincs.genes, ["F", "Dup"]);
        assert_eq!(dense(&lincs.matrix), vec![vec![0.0, 0.0], vec![2.0, 2.0], vec![1.0, 0.0]]);
        let listed = activity(&GeneActivityOptions { features: Some(names(&["C", "Dup", "ID_G", "nope"])), ..Default::default() });
        assert_eq!(listed.genes, ["C", "ID_G", "Dup", "Dup.1"]);
        assert_eq!(dense(&listed.matrix)[1], vec![5.0, 1.0, 0.0, 0.0]);
        // A width cutoff that drops E (499,999 wide) too.
        let narrow = gene_regions(&annotation(), &GeneActivityOptions { max_width: 499_999, ..Default::default() }).unwrap();
        assert!(!narrow.names.contains(&"E".to_string()));
        let wide = gene_regions(&annotation(), &GeneActivityOptions { max_width: 500_001, ..Default::default() }).unwrap();
        assert!(wide.names.contains(&"D".to_string()));
        let none = gene_regions(&annotation(), &GeneActivityOptions { features: Some(names(&["nope"])), ..Default::default() });
        assert!(none.unwrap_err().to_string().contains("no gene is left after filtering"), "filter message");
    }

    #[test]
    fn gene_activity_peak_names_in_all_three_forms() {
        let want = Interval { chrom: "chr1".into(), start: 100, end: 200 };
        for name in ["chr1-100-200", "chr1:100-200", "chr1_100_200"] {
            assert_eq!(parse_peak_name(name), Some(want.clone()), "{name}");
        }
        let scaffold = parse_peak_name("chrUn_GL000220v1-100-200").unwrap();
        assert_eq!((scaffold.chrom.as_str(), scaffold.start, scaffold.end), ("chrUn_GL000220v1", 100, 200));
        assert_eq!(parse_peak_name("chr1_KI270706v1_random_5_9").unwrap().chrom, "chr1_KI270706v1_random");
        assert_eq!(parse_peak_name("HLA-A-3-4").unwrap().chrom, "HLA-A");
        for bad in ["chr1-100", "chr1-200-100", "Gapdh", "chr1-1e3-2000", "-100-200", "chr1-100-"] {
            assert_eq!(parse_peak_name(bad), None, "{bad}");
        }
        let err = parse_peak_names(&names(&["chr1-1-2", "Gapdh", "x"])).unwrap_err().to_string();
        assert!(err.starts_with("peak name 2 ('Gapdh') is not a genomic region"), "{err}");
        // Mixed forms give the same matrix as the dashed form.
        let regions = gene_regions(&annotation(), &GeneActivityOptions::default()).unwrap();
        let mixed: Vec<String> = PEAKS
            .iter()
            .enumerate()
            .map(|(i, p)| match i % 3 {
                0 => p.to_string(),
                1 => p.replacen('-', ":", 1),
                _ => p.replace('-', "_"),
            })
            .collect();
        let a = gene_activity_from_peaks(&peak_matrix(), &mixed, &regions).unwrap();
        assert_eq!(a, activity(&GeneActivityOptions::default()));
    }

    #[test]
    fn gene_activity_says_when_chromosome_styles_differ() {
        let regions = gene_regions(&annotation(), &GeneActivityOptions::default()).unwrap();
        let no_chr: Vec<String> = PEAKS.iter().map(|p| p.trim_start_matches("chr").to_string()).collect();
        let err = gene_activity_from_peaks(&peak_matrix(), &no_chr, &regions).unwrap_err();
        assert!(matches!(err, CellPredXError::ChromosomeNaming { .. }));
        let msg = err.to_string();
        assert!(msg.contains("peaks name chromosomes like '1' but the annotation like 'chr1'"), "{msg}");
        assert!(msg.contains("add the 'chr' prefix"), "{msg}");

        let mut ensembl = annotation();
        ensembl.chrom.iter_mut().for_each(|c| *c = c.trim_start_matches("chr").to_string());
        let ensembl = gene_regions(&ensembl, &GeneActivityOptions::default()).unwrap();
        let msg = gene_activity_from_peaks(&peak_matrix(), &names(&PEAKS), &ensembl).unwrap_err().to_string();
        assert!(msg.contains("like 'chr1' but the annotation like '1'") && msg.contains("remove the 'chr' prefix"), "{msg}");

        let other: Vec<String> = (0..12).map(|i| format!("scaffold9-{}-{}", i * 10 + 1, i * 10 + 5)).collect();
        let err = gene_activity_from_peaks(&peak_matrix(), &other, &regions).unwrap_err();
        assert!(matches!(err, CellPredXError::NoOverlap(_)));
        assert!(err.to_string().contains("no peaks chromosome is in the gene annotation (peaks: scaffold9"), "{err}");

        let far: Vec<String> = (0..12).map(|i| format!("chr1-{}-{}", 700_000 + i, 700_100 + i)).collect();
        let msg = gene_activity_from_peaks(&peak_matrix(), &far, &regions).unwrap_err().to_string();
        assert!(msg.starts_with("none of the 12 peaks overlaps any of the 7 gene regions"), "{msg}");
    }

    #[test]
    fn gene_activity_rejects_malformed_peak_input() {
        let regions = gene_regions(&annotation(), &GeneActivityOptions::default()).unwrap();
        let err = gene_activity_from_peaks(&peak_matrix(), &names(&PEAKS[..11]), &regions).unwrap_err();
        assert_eq!(err.to_string(), "peak names (one per peak): expected 12, got 11");
        let negative = CsrMatrix::try_new(1, 12, vec![0, 1], vec![0], vec![-1.0]).unwrap();
        let msg = gene_activity_from_peaks(&negative, &names(&PEAKS), &regions).unwrap_err().to_string();
        assert!(msg.contains("1 negative and 0 NaN"), "{msg}");
    }

    #[test]
    fn gene_activity_annotation_columns_are_checked() {
        let s = |v: &[&str]| names(v);
        let bad_strand = GeneAnnotation::from_columns(s(&["chr1"]), &[1.0], &[5.0], &s(&["x"]), s(&["A"]), s(&["a"]), s(&["b"]));
        assert!(bad_strand.unwrap_err().to_string().contains("strand of gene 1 is 'x'"));
        let reversed = GeneAnnotation::from_columns(s(&["chr1"]), &[9.0], &[5.0], &s(&["+"]), s(&["A"]), s(&["a"]), s(&["b"]));
        assert!(reversed.unwrap_err().to_string().contains("ends at 5 before it starts at 9"));
        let zero = GeneAnnotation::from_columns(s(&["chr1"]), &[0.0], &[5.0], &s(&["+"]), s(&["A"]), s(&["a"]), s(&["b"]));
        assert!(zero.unwrap_err().to_string().contains("start of gene 1 is 0"));
        let short = GeneAnnotation::from_columns(s(&["chr1", "chr1"]), &[1.0], &[5.0], &s(&["+"]), s(&["A"]), s(&["a"]), s(&["b"]));
        assert!(short.unwrap_err().to_string().contains("'start' (one value per gene): expected 2, got 1"));
    }

    fn gzip_members(path: &Path, members: &[&str]) {
        let mut bytes = Vec::new();
        for m in members {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(m.as_bytes()).unwrap();
            bytes.extend(gz.finish().unwrap());
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn gene_activity_from_fragments_counts_each_overlapping_fragment_once_per_gene() {
        let dir = scratch_dir("fragments");
        let path = dir.join("fragments.tsv.gz");
        // BED: 0-based start, end exclusive, so the 1-based span is [start + 1, end].
        gzip_members(
            &path,
            &[
                "# comment line\nchr1\t499\t600\tAAA\t1\nchr1\t7000\t8001\tAAA\t3\nchr1\t7000\t8000\tAAA\t1\n",
                "chr1\t1999\t2100\tAAA\t1\nchr1\t2000\t2100\tAAA\t1\n",
                "chr1\t19899\t30100\tBBB\t1\nchr1\t19899\t30100\tZZZ\t1\nchr2\t6499\t6600\tBBB\t2\nchrX\t1\t50\tBBB\t1\n",
            ],
        );
        let regions = gene_regions(&annotation(), &GeneActivityOptions::default()).unwrap();
        let cells = names(&["BBB", "AAA", "CCC"]);
        let a = gene_activity_from_fragments(&path, &cells, &regions).unwrap();
        assert_eq!(a.genes, regions.names);
        //          A    B    C    E    G    Dup  Dup.1
        assert_eq!(
            dense(&a.matrix),
            vec![
                vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0], // a fragment over B and C counts for both
                vec![2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], // 1-bp overlaps count, 0-bp ones do not; count column ignored
                vec![0.0; 7],                            // no fragments
            ]
        );
        // Fragments over two genes count once for the fragment tally.
        assert_eq!(a.overlapping, 5);
        // The same content uncompressed gives the same counts.
        let plain = dir.join("fragments.tsv");
        std::fs::write(&plain, "chr1\t499\t600\tAAA\t1\n").unwrap();
        let p = gene_activity_from_fragments(&plain, &cells, &regions).unwrap();
        assert_eq!(dense(&p.matrix)[1][0], 1.0);
    }

    #[test]
    fn gene_activity_from_fragments_explains_its_failures() {
        let dir = scratch_dir("fragments-bad");
        let regions = gene_regions(&annotation(), &GeneActivityOptions::default()).unwrap();
        let cells = names(&["AAA"]);
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ensembl = write("ensembl.tsv", "1\t499\t600\tAAA\t1\n");
        let err = gene_activity_from_fragments(&ensembl, &cells, &regions).unwrap_err();
        assert!(err.to_string().contains("the fragments name chromosomes like '1' but the annotation like 'chr1'"), "{err}");
        let others = write("others.tsv", "chr1\t499\t600\tXXX-1\t1\n");
        let msg = gene_activity_from_fragments(&others, &cells, &regions).unwrap_err().to_string();
        assert!(msg.contains("none of the 1 cells has a fragment") && msg.contains("'XXX-1'"), "{msg}");
        let short = write("short.tsv", "chr1\t499\t600\n");
        let msg = gene_activity_from_fragments(&short, &cells, &regions).unwrap_err().to_string();
        assert!(msg.contains("line 1: fewer than 4"), "{msg}");
        let text = write("text.tsv", "chr1\t499\t600\tAAA\t1\nchr1\tx\t600\tAAA\t1\n");
        let msg = gene_activity_from_fragments(&text, &cells, &regions).unwrap_err().to_string();
        assert!(msg.contains("line 2: start 'x' is not a whole number"), "{msg}");
        let missing = gene_activity_from_fragments(&dir.join("absent.tsv.gz"), &cells, &regions).unwrap_err();
        assert!(missing.to_string().starts_with("cannot open"), "{missing}");
        let far = write("far.tsv", "chr1\t900000\t900100\tAAA\t1\n");
        let msg = gene_activity_from_fragments(&far, &cells, &regions).unwrap_err().to_string();
        assert!(msg.starts_with("none of the 1 fragments of the requested cells overlaps"), "{msg}");
    }

    #[test]
    fn gene_activity_reads_tsv_gtf_and_gff3_annotations() {
        let dir = scratch_dir("annotations");
        let expected = GeneAnnotation::from_columns(
            names(&["1", "1"]),
            &[1001.0, 3001.0],
            &[2000.0, 4000.0],
            &names(&["+", "-"]),
            names(&["A;x", ""]),
            names(&["ENSG1", "ENSG2"]),
            names(&["protein_coding", "lncRNA"]),
        )
        .unwrap();
        assert_eq!(expected.gene_name[1], "ENSG2");

        let tsv = dir.join("genes.tsv.gz");
        gzip_members(
            &tsv,
            &["chrom\tstart\tend\tstrand\tgene_name\tgene_id\tgene_biotype\n1\t1001\t2000\t+\tA;x\tENSG1\tprotein_coding\n",
              "1\t3001\t4000\t-\t\tENSG2\tlncRNA\n"],
        );
        assert_eq!(GeneAnnotation::read(&tsv).unwrap(), expected);

        // The GTF splitter cuts attributes at ';', so its name has none (GFF3 escapes it as %3B).
        let mut expected_gtf = expected.clone();
        expected_gtf.gene_name[0] = "A".to_string();
        let gtf = dir.join("genes.gtf");
        std::fs::write(
            &gtf,
            "#!genome-build GRCm38\n\
             1\tensembl\tgene\t1001\t2000\t.\t+\t.\tgene_id \"ENSG1\"; gene_version \"1\"; gene_name \"A\"; gene_biotype \"protein_coding\";\n\
             1\tensembl\ttranscript\t1001\t2000\t.\t+\t.\tgene_id \"ENSG1\"; transcript_id \"T1\";\n\
             1\tensembl\tgene\t3001\t4000\t.\t-\t.\tgene_id \"ENSG2\"; gene_type \"lncRNA\";\n",
        )
        .unwrap();
        assert_eq!(GeneAnnotation::read(&gtf).unwrap(), expected_gtf);

        let gff = dir.join("genes.gff3.gz");
        gzip_members(
            &gff,
            &["##gff-version 3\n\
               1\tensembl\tgene\t1001\t2000\t.\t+\t.\tID=gene:ENSG1;Name=A%3Bx;biotype=protein_coding\n\
               1\tensembl\tmRNA\t1001\t2000\t.\t+\t.\tID=transcript:T1;Parent=gene:ENSG1\n",
              "1\thavana\tncRNA_gene\t3001\t4000\t.\t-\t.\tID=gene:ENSG2;biotype=lncRNA\n"],
        );
        assert_eq!(GeneAnnotation::read(&gff).unwrap(), expected);
        // GENCODE's GFF3 spells the attributes like its GTF.
        let gencode = dir.join("gencode.gff3");
        std::fs::write(
            &gencode,
            "1\tHAVANA\tgene\t1001\t2000\t.\t+\t.\tID=ENSG1;gene_id=ENSG1;gene_type=protein_coding;gene_name=A%3Bx\n\
             1\tHAVANA\tgene\t3001\t4000\t.\t-\t.\tID=ENSG2;gene_id=ENSG2;gene_type=lncRNA\n",
        )
        .unwrap();
        assert_eq!(GeneAnnotation::read(&gencode).unwrap(), expected);

        let bad = dir.join("bad.tsv");
        std::fs::write(&bad, "chrom\tstart\tend\tgene_name\n").unwrap();
        let msg = GeneAnnotation::read(&bad).unwrap_err().to_string();
        assert!(msg.contains("lacks the columns strand, gene_id, gene_biotype"), "{msg}");
        let junk = dir.join("junk.txt");
        std::fs::write(&junk, "hello world\n").unwrap();
        assert!(GeneAnnotation::read(&junk).unwrap_err().to_string().contains("not a gene annotation"));
    }

    #[test]
    fn gene_activity_reads_the_shipped_mm10_table() {
        let Some(data) = crate::io::test_support::shared_data() else { return };
        let a = GeneAnnotation::read(&data.join("annotations/mm10_genes.tsv.gz")).unwrap();
        assert_eq!(a.len(), 55_401);
        let gapdh = a.gene_name.iter().position(|n| n == "Gapdh").unwrap();
        assert_eq!((a.chrom[gapdh].as_str(), a.start[gapdh], a.end[gapdh], a.strand[gapdh]), ("chr6", 125161715, 125166467, Strand::Minus));
        let r = gene_regions(&a, &GeneActivityOptions::default()).unwrap();
        assert!(r.len() > 21_000 && r.len() <= 21_859, "{}", r.len());
    }
}
