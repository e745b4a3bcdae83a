# Gene activity. Regions with the defaults (2 kb upstream, 0 downstream, 1-based closed):
#   A chr1 1001-2000 (+)         -> [1, 2000]       (extension clipped at 1)
#   B chr1 10001-20000 (*)       -> [8001, 20000]   ('*' counts as '+')
#   C chr1 30001-40000 (-)       -> [30001, 42000]  (upstream of a '-' gene is after its end)
#   D chr1 100001-600000 (+)     -> dropped: 500,000 wide, not below max.width
#   E chr1 100001-599999 (+)     -> [98001, 599999] (499,999 wide: kept)
#   F chr1 50001-60000 (+) lincRNA -> dropped by the default biotype filter
toy_genes <- function() {
  data.frame(
    chrom = "chr1",
    start = c(1001, 10001, 30001, 100001, 100001, 50001),
    end = c(2000, 20000, 40000, 600000, 599999, 60000),
    strand = c("+", "*", "-", "+", "+", "+"),
    gene_name = c("A", "B", "C", "D", "E", "F"),
    gene_id = paste0("ID_", c("A", "B", "C", "D", "E", "F")),
    gene_biotype = c(rep("protein_coding", 5), "lincRNA"),
    stringsAsFactors = FALSE
  )
}

toy_peak_names <- c(
  "chr1-500-600",       # A
  "chr1-7000-8001",     # B, by 1 bp at the region's start
  "chr1-6000-8000",     # nothing: ends 1 bp before B's region
  "chr1-19900-30100",   # B and C
  "chr1-42000-42500",   # C, by 1 bp at the region's end
  "chr1-42001-42500",   # nothing
  "chr1-55000-55100",   # F (lincRNA) only
  "chr1-300000-300100"  # E (D is too wide)
)

toy_peaks <- function(names = toy_peak_names) {
  x <- matrix(0, 8, 2, dimnames = list(names, c("c1", "c2")))
  x[c(1, 2, 3, 4, 8), 1] <- c(1, 2, 5, 3, 1)
  x[c(4, 5, 6, 7), 2] <- c(1, 4, 7, 2)
  Matrix::Matrix(x, sparse = TRUE)
}

# By hand: c1 = A 1, B 2 + 3, C 3, E 1; c2 = B 1, C 1 + 4 (F 2 only without the biotype filter).
toy_expected <- matrix(c(1, 5, 3, 1, 0, 1, 5, 0), 4, 2, dimnames = list(c("A", "B", "C", "E"), c("c1", "c2")))

quiet_activity <- function(...) GeneActivity(..., verbose = FALSE)

# A fresh directory under the session's temporary directory (removed when R exits).
scratch_dir <- function() {
  dir <- tempfile("gene-activity-")
  dir.create(dir)
  dir
}

write_gtf <- function(genes, path) {
  gene_lines <- sprintf("%s\ttest\tgene\t%d\t%d\t.\t%s\t.\tgene_id \"%s\"; gene_name \"%s\"; gene_biotype \"%s\";",
                        genes$chrom, as.integer(genes$start), as.integer(genes$end), genes$strand,
                        genes$gene_id, genes$gene_name, genes$gene_biotype)
  transcript_lines <- sprintf("%s\ttest\ttranscript\t%d\t%d\t.\t%s\t.\tgene_id \"%s\"; transcript_id \"T%d\";",
                              genes$chrom, as.integer(genes$start), as.integer(genes$start) + 10L, genes$strand,
                              genes$gene_id, seq_len(nrow(genes)))
  writeLines(c("#!genome-build test", rbind(gene_lines, transcript_lines)), path)
  path
}

write_gff3 <- function(genes, path) {
  con <- gzfile(path, "w")
  on.exit(close(con))
  writeLines(c("##gff-version 3", sprintf("%s\ttest\tgene\t%d\t%d\t.\t%s\t.\tID=gene:%s;Name=%s;biotype=%s",
                                          genes$chrom, as.integer(genes$start), as.integer(genes$end), genes$strand,
                                          genes$gene_id, genes$gene_name, genes$gene_biotype)), con)
  path
}

write_tsv_gz <- function(genes, path) {
  con <- gzfile(path, "w")
  on.exit(close(con))
  genes$start <- as.integer(genes$start)
  genes$end <- as.integer(genes$end)
  utils::write.table(genes, con, sep = "\t", quote = FALSE, row.names = FALSE)
  path
}

test_that("a peak matrix gives the hand-computed gene activity", {
  out <- quiet_activity(toy_peaks(), annotation = toy_genes())
  expect_s4_class(out, "dgCMatrix")
  expect_identical(dimnames(out), dimnames(toy_expected))
  expect_equal(as.matrix(out), toy_expected)
  # A base matrix gives the same.
  expect_identical(quiet_activity(as.matrix(toy_peaks()), annotation = toy_genes()), out)

  all <- quiet_activity(toy_peaks(), annotation = toy_genes(), biotypes = NULL)
  expect_identical(rownames(all), c("A", "B", "C", "E", "F"))
  expect_equal(as.matrix(all)["F", ], c(c1 = 0, c2 = 2))
  # Without the upstream extension, A's region is its body and peak 1 misses it; C's region
  # ends at 40000 and peak 5 misses it too.
  body <- quiet_activity(toy_peaks(), annotation = toy_genes(), extend.upstream = 0)
  expect_equal(as.matrix(body)[c("A", "C"), ], matrix(c(0, 3, 0, 1), 2, dimnames = list(c("A", "C"), c("c1", "c2"))))
  # A 500,001 bp limit keeps D (500,000 wide) too; a 499,999 limit drops E.
  expect_true("D" %in% rownames(quiet_activity(toy_peaks(), annotation = toy_genes(), max.width = 500001)))
  expect_false("E" %in% rownames(quiet_activity(toy_peaks(), annotation = toy_genes(), max.width = 499999)))
  listed <- quiet_activity(toy_peaks(), annotation = toy_genes(), features = c("C", "E", "nope"))
  expect_identical(rownames(listed), c("C", "E"))
})

test_that("repeated and empty gene names follow the documented rules", {
  genes <- toy_genes()
  genes$gene_name <- c("X", "X", "", "D", "X", "F")
  out <- quiet_activity(toy_peaks(), annotation = genes)
  expect_identical(rownames(out), c("X", "X.1", "ID_C", "X.2"))
  expect_equal(unname(as.matrix(out)), unname(toy_expected))
})

test_that("the three peak-name forms give the same result", {
  dashed <- quiet_activity(toy_peaks(), annotation = toy_genes())
  colon <- sub("-", ":", toy_peak_names)
  underscore <- gsub("-", "_", toy_peak_names)
  expect_identical(quiet_activity(toy_peaks(colon), annotation = toy_genes()), dashed)
  expect_identical(quiet_activity(toy_peaks(underscore), annotation = toy_genes()), dashed)
})

test_that("GRanges, data frame, TSV, GTF and GFF3 annotations give identical matrices", {
  genes <- toy_genes()
  from_df <- quiet_activity(toy_peaks(), annotation = genes)
  dir <- scratch_dir()
  expect_identical(quiet_activity(toy_peaks(), annotation = write_tsv_gz(genes, file.path(dir, "genes.tsv.gz"))), from_df)
  expect_identical(quiet_activity(toy_peaks(), annotation = write_gtf(genes, file.path(dir, "genes.gtf"))), from_df)
  expect_identical(quiet_activity(toy_peaks(), annotation = write_gff3(genes, file.path(dir, "genes.gff3.gz"))), from_df)
  # seqnames / gene_type spellings, and transcript rows collapsed to the gene span.
  long <- rbind(genes, transform(genes, start = start + 100, end = end - 100))
  names(long)[names(long) == "chrom"] <- "seqnames"
  names(long)[names(long) == "gene_biotype"] <- "gene_type"
  expect_identical(quiet_activity(toy_peaks(), annotation = long), from_df)

  skip_if_not_installed("GenomicRanges")
  gr <- GenomicRanges::GRanges(genes$chrom, IRanges::IRanges(genes$start, genes$end), strand = genes$strand,
                               gene_name = genes$gene_name, gene_id = genes$gene_id, gene_biotype = genes$gene_biotype)
  expect_identical(quiet_activity(toy_peaks(), annotation = gr), from_df)
})

test_that("a fragments file is counted per fragment for the requested cells only", {
  dir <- scratch_dir()
  path <- file.path(dir, "fragments.tsv.gz")
  con <- gzfile(path, "w")
  # BED: 0-based start, so 499-600 is [500, 600]; 1999-2100 touches A by 1 bp, 2000-2100 misses it.
  writeLines(c("# a comment", "chr1\t499\t600\tc1\t5", "chr1\t1999\t2100\tc1\t1", "chr1\t2000\t2100\tc1\t1",
               "chr1\t19899\t30100\tc2\t1", "chr1\t19899\t30100\tother\t1"), con)
  close(con)
  out <- quiet_activity(toy_peaks(), annotation = toy_genes(), fragments = path)
  expect_equal(as.matrix(out), matrix(c(2, 0, 0, 0, 0, 1, 1, 0), 4, dimnames = dimnames(toy_expected)))
})

test_that("verbose reports genes, cells and time; verbose = FALSE is silent", {
  expect_message(GeneActivity(toy_peaks(), annotation = toy_genes()), "4 genes x 2 cells")
  expect_silent(GeneActivity(toy_peaks(), annotation = toy_genes(), verbose = FALSE))
})

test_that("GeneAnnotation() returns the shipped tables", {
  mm10 <- GeneAnnotation("mm10")
  expect_identical(names(mm10), c("chrom", "start", "end", "strand", "gene_name", "gene_id", "gene_biotype"))
  expect_equal(nrow(mm10), 55401)
  gapdh <- mm10[mm10$gene_name == "Gapdh", ]
  expect_identical(list(gapdh$chrom, gapdh$start, gapdh$end, gapdh$strand), list("chr6", 125161715L, 125166467L, "-"))
  expect_true(file.exists(system.file("annotations", "README.md", package = "CellPredX")))
  expect_error(GeneAnnotation("mm9"), class = "rlang_error")
})

test_that("the Seurat method adds the ACTIVITY assay and leaves the object alone on error", {
  skip_if_not_installed("SeuratObject")
  obj <- SeuratObject::CreateSeuratObject(toy_peaks(), assay = "peaks")
  out <- quiet_activity(obj, annotation = toy_genes())
  expect_true("ACTIVITY" %in% SeuratObject::Assays(out))
  expect_identical(SeuratObject::DefaultAssay(out), "peaks")
  counts <- SeuratObject::GetAssayData(out[["ACTIVITY"]], "counts")
  expect_equal(as.matrix(counts), toy_expected)
  data <- SeuratObject::GetAssayData(out[["ACTIVITY"]], "data")
  expect_equal(as.matrix(data), log1p(sweep(toy_expected, 2, colSums(toy_expected), "/") * 1e4))
  raw <- quiet_activity(obj, annotation = toy_genes(), normalize = FALSE, new.assay = "GA")
  expect_equal(as.matrix(SeuratObject::GetAssayData(raw[["GA"]], "data")), toy_expected)

  before <- obj
  expect_error(quiet_activity(obj, annotation = "mm9"), class = "cellpredx_error")
  expect_identical(obj, before)
  rna <- SeuratObject::CreateSeuratObject(toy_peaks(), assay = "RNA")
  expect_error(quiet_activity(rna, annotation = toy_genes()), class = "cellpredx_error",
               regexp = "no assay named \"peaks\" or \"ATAC\".*assays are \"RNA\"")
  expect_true("ACTIVITY" %in% SeuratObject::Assays(quiet_activity(rna, annotation = toy_genes(), assay = "RNA")))
  expect_error(quiet_activity(obj, annotation = toy_genes(), new.assay = "peaks"), class = "cellpredx_error",
               regexp = "peaks assay itself")
})

test_that("bad input gets a clear error naming the argument", {
  peaks <- toy_peaks()
  go <- function(x = peaks, annotation = toy_genes(), ...) quiet_activity(x, annotation = annotation, ...)
  expect_error(GeneActivity(peaks), class = "cellpredx_error", regexp = "annotation.*is missing")
  expect_error(go(annotation = "mm9"), class = "cellpredx_error", regexp = "\"mm9\" is neither a shipped genome nor an existing file")
  expect_error(go(annotation = 42), class = "cellpredx_error", regexp = "must be a genome name")
  expect_error(go(annotation = toy_genes()[c("chrom", "start", "end")]), class = "cellpredx_error",
               regexp = "lacks 2 columns: \"gene_name\" and \"gene_biotype\"")
  expect_error(go(annotation = transform(toy_genes(), start = as.character(start))), class = "cellpredx_error",
               regexp = "must be numeric")
  expect_error(go(annotation = transform(toy_genes(), strand = "x")), class = "cellpredx_error",
               regexp = "strand of gene 1 is 'x'")

  bad_names <- peaks
  rownames(bad_names)[3] <- "Gapdh"
  expect_error(go(bad_names), class = "cellpredx_error",
               regexp = "row names of `object` must be peak regions.*peak name 3 \\('Gapdh'\\)")
  unnamed <- peaks
  rownames(unnamed) <- NULL
  expect_error(go(unnamed), class = "cellpredx_error", regexp = "no peak names")

  no_chr <- peaks
  rownames(no_chr) <- sub("^chr", "", rownames(no_chr))
  expect_error(go(no_chr), class = "cellpredx_error",
               regexp = "name chromosomes differently.*peaks name chromosomes like '1' but the annotation like 'chr1'.*paste0")
  expect_error(go(annotation = transform(toy_genes(), chrom = "1")), class = "cellpredx_error",
               regexp = "like 'chr1' but the annotation like '1'.*remove the 'chr' prefix")
  expect_error(go(annotation = transform(toy_genes(), chrom = "chr2")), class = "cellpredx_error",
               regexp = "no peaks chromosome is in the gene annotation")
  expect_error(go(annotation = transform(toy_genes(), start = start + 7e5, end = end + 7e5)), class = "cellpredx_error",
               regexp = "none of the 8 peaks overlaps any of the 4 gene regions")
  expect_error(go(features = "nope"), class = "cellpredx_error", regexp = "No gene passes")

  negative <- peaks
  negative[1, 1] <- -1
  expect_error(go(negative), class = "cellpredx_error", regexp = "must hold peak counts, but has 1 negative")
  with_na <- as.matrix(peaks)
  with_na[2, 2] <- NA
  expect_error(go(with_na), class = "cellpredx_error", regexp = "1 NA or infinite")
  text <- matrix(as.character(as.matrix(peaks)), 8, dimnames = dimnames(peaks))
  expect_error(go(text), class = "cellpredx_error", regexp = "numeric matrix")
  expect_error(go(fragments = "no/such/fragments.tsv.gz"), class = "cellpredx_error",
               regexp = "fragments.*does not exist")
  expect_error(go(extend.upstream = -1), class = "cellpredx_error", regexp = "extend.upstream")
  expect_error(go(max.width = 0), class = "cellpredx_error", regexp = "max.width")
  expect_error(go(biotypes = NA_character_), class = "cellpredx_error", regexp = "biotypes")
  expect_error(GeneActivity(peaks, annotation = toy_genes(), verbose = "yes"), class = "cellpredx_error", regexp = "verbose")
})

test_that("real SNARE-seq peaks give activity that agrees with the gene-peak links", {
  skip_without_data("snareseq_mouse_cortex")
  peaks <- read_shared("snareseq_mouse_cortex/atac_peaks")$counts
  linked <- read_shared("snareseq_mouse_cortex/atac_gene_activity")$counts
  set.seed(7)
  cells <- sort(sample(ncol(peaks), 300))
  out <- quiet_activity(peaks[, cells], annotation = "mm10")
  expect_s4_class(out, "dgCMatrix")
  expect_identical(colnames(out), colnames(peaks)[cells])
  protein_coding <- GeneAnnotation("mm10")
  protein_coding <- protein_coding$gene_name[protein_coding$gene_biotype == "protein_coding"]
  # Names are the annotation's, with make.unique() suffixes on repeated ones.
  renamed <- setdiff(rownames(out), protein_coding)
  expect_true(all(sub("\\.[0-9]+$", "", renamed) %in% protein_coding))
  expect_lt(length(renamed), 50)
  expect_gt(nrow(out), 20000)
  expect_true(all(out@x > 0))
  shared <- intersect(rownames(linked), rownames(out))
  expect_gt(length(shared), 1000)
  # Measured: Pearson 0.997-0.998 between per-gene totals over four 300-cell samples (the
  # links are mostly gene body + promoter peaks); 0.9 leaves a wide margin.
  totals <- cor(Matrix::rowSums(out[shared, ]), Matrix::rowSums(linked[shared, cells]))
  expect_gt(totals, 0.9)
})
