// Loads libtorch before CellPredX.so does, with RTLD_DEEPBIND.
//
// libtorch_cpu carries its own BLAS and LAPACK (MKL) under the standard Fortran names (sgemm_,
// sgesdd_, ...). R's own libblas/liblapack, loaded with R itself, export the same names, and the
// dynamic linker binds libtorch's calls to whichever came first: R's reference BLAS. Training then
// runs 10-20x slower than outside R (bench/threads.R measures it). DEEPBIND makes libtorch look
// up symbols in itself first. CellPredX.so, loaded next, finds libtorch_cpu already in memory.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <R_ext/Error.h>
#include <R_ext/Rdynload.h>

#ifndef CELLPREDX_TORCH_LIB
#error "CELLPREDX_TORCH_LIB must name libtorch's lib directory"
#endif

void R_init_cellpredx_torch_loader(DllInfo *dll) {
    const char *path = CELLPREDX_TORCH_LIB "/libtorch_cpu.so";
    if (!dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)) {
        Rf_error("CellPredX could not load libtorch from %s (%s); reinstall CellPredX or run 'make setup'",
                 path, dlerror());
    }
    R_registerRoutines(dll, NULL, NULL, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
}
