// R loads the package through R_init_CellPredX; the Rust crate registers the routines.
void R_init_CellPredX_extendr(void *dll);
void register_extendr_panic_hook(void);

void R_init_CellPredX(void *dll) {
    // Keeps Rust's panic text off the console (set EXTENDR_BACKTRACE=1 to see it); the panic
    // itself is turned into an R error by the Rust side.
    register_extendr_panic_hook();
    R_init_CellPredX_extendr(dll);
}
