//! Gene activity: an annotation (R columns or a file) and a peak matrix or fragments file in, a
//! genes x cells sparse matrix out.

use crate::convert::{csr_from_r, csr_to_r};
use crate::errors::{guard, r_err};
use cellpredx::gene_activity::{
    gene_activity_from_fragments, gene_activity_from_peaks, gene_regions, GeneActivity, GeneActivityOptions,
    GeneAnnotation, GeneRegions, Strand,
};
use extendr_api::prelude::*;
use std::path::Path;

fn strings(x: &Robj, what: &str) -> extendr_api::Result<Vec<String>> {
    let s = Strings::try_from(x.clone()).map_err(|_| crate::errors::invalid(format!("{what} must be a character vector")))?;
    Ok(s.iter().map(|v| if v.is_na() { String::new() } else { v.to_string() }).collect())
}

fn numbers(x: &Robj, what: &str) -> extendr_api::Result<Vec<f64>> {
    if let Some(v) = x.as_real_slice() {
        return Ok(v.to_vec());
    }
    if let Some(v) = x.as_integer_slice() {
        return Ok(v.iter().map(|&i| if i == i32::MIN { f64::NAN } else { i as f64 }).collect());
    }
    Err(crate::errors::invalid(format!("{what} must be numeric")))
}

/// The annotation from a list of columns named as in the shipped tables.
fn annotation_from_r(columns: &List) -> extendr_api::Result<GeneAnnotation> {
    let get = |name: &str| {
        columns
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
            .ok_or_else(|| crate::errors::invalid(format!("the gene annotation has no column `{name}`")))
    };
    let column = |name: &str| -> extendr_api::Result<Vec<String>> { strings(&get(name)?, &format!("annotation column `{name}`")) };
    GeneAnnotation::from_columns(
        column("chrom")?,
        &numbers(&get("start")?, "annotation column `start`")?,
        &numbers(&get("end")?, "annotation column `end`")?,
        &column("strand")?,
        column("gene_name")?,
        column("gene_id")?,
        column("gene_biotype")?,
    )
    .map_err(r_err)
}

fn optional_strings(x: &Robj, what: &str) -> extendr_api::Result<Option<Vec<String>>> {
    if x.is_null() {
        Ok(None)
    } else {
        strings(x, what).map(Some)
    }
}

fn whole(x: f64, what: &str) -> extendr_api::Result<u64> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 {
        Ok(x as u64)
    } else {
        Err(crate::errors::invalid(format!("`{what}` must be a whole number of at least 0, not {x}")))
    }
}

fn regions_from_r(
    annotation: &List,
    biotypes: &Robj,
    features: &Robj,
    extend_upstream: f64,
    extend_downstream: f64,
    max_width: f64,
) -> extendr_api::Result<GeneRegions> {
    let options = GeneActivityOptions {
        biotypes: optional_strings(biotypes, "`biotypes`")?,
        features: optional_strings(features, "`features`")?,
        extend_upstream: whole(extend_upstream, "extend.upstream")?,
        extend_downstream: whole(extend_downstream, "extend.downstream")?,
        max_width: whole(max_width, "max.width")?,
    };
    gene_regions(&annotation_from_r(annotation)?, &options).map_err(r_err)
}

fn activity_to_r(a: &GeneActivity) -> extendr_api::Result<List> {
    Ok(list!(
        matrix = csr_to_r(&a.matrix)?,
        genes = a.genes.clone(),
        gene_ids = a.gene_ids.clone(),
        overlapping = a.overlapping as f64
    ))
}

/// Reads a gene annotation file (the shipped TSV, GTF or GFF3; plain or gzip) into columns.
#[extendr]
fn read_gene_annotation_(path: &str) -> extendr_api::Result<List> {
    guard("read_gene_annotation_", || {
        let a = GeneAnnotation::read(Path::new(path)).map_err(r_err)?;
        let strand: Vec<&str> = a.strand.iter().map(|s| if *s == Strand::Minus { "-" } else { "+" }).collect();
        Ok(list!(
            chrom = a.chrom,
            start = a.start.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            end = a.end.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            strand = strand,
            gene_name = a.gene_name,
            gene_id = a.gene_id,
            gene_biotype = a.gene_biotype
        ))
    })
}

/// Gene activity from a peaks x cells matrix whose peak names are `peak_names`.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn gene_activity_peaks_(
    x: Robj,
    peak_names: Robj,
    annotation: List,
    biotypes: Robj,
    features: Robj,
    extend_upstream: f64,
    extend_downstream: f64,
    max_width: f64,
) -> extendr_api::Result<List> {
    guard("gene_activity_peaks_", || {
        let regions = regions_from_r(&annotation, &biotypes, &features, extend_upstream, extend_downstream, max_width)?;
        let peaks = csr_from_r(&x, "object")?;
        let names = strings(&peak_names, "peak names")?;
        activity_to_r(&gene_activity_from_peaks(&peaks, &names, &regions).map_err(r_err)?)
    })
}

/// Gene activity counted from a fragments file for the given cell barcodes, in their order.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn gene_activity_fragments_(
    path: &str,
    cells: Robj,
    annotation: List,
    biotypes: Robj,
    features: Robj,
    extend_upstream: f64,
    extend_downstream: f64,
    max_width: f64,
) -> extendr_api::Result<List> {
    guard("gene_activity_fragments_", || {
        let regions = regions_from_r(&annotation, &biotypes, &features, extend_upstream, extend_downstream, max_width)?;
        let cells = strings(&cells, "cells")?;
        activity_to_r(&gene_activity_from_fragments(Path::new(path), &cells, &regions).map_err(r_err)?)
    })
}

extendr_module! {
    mod gene_activity;
    fn read_gene_annotation_;
    fn gene_activity_peaks_;
    fn gene_activity_fragments_;
}
