# Installs CellPredX.so and the libtorch loader it depends on (see torch-loader/loader.c).
files <- c(paste0("CellPredX", SHLIB_EXT), paste0("cellpredx_torch_loader", SHLIB_EXT))
dest <- file.path(R_PACKAGE_DIR, paste0("libs", R_ARCH))
dir.create(dest, recursive = TRUE, showWarnings = FALSE)
file.copy(files, dest, overwrite = TRUE)
