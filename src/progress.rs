//! How far a long run has got, for whoever watches: the library says what it finished
//! (an account-region planned, a change applied) and the command line shows it (a bar on
//! a terminal, plain lines otherwise). The library itself prints nothing.

/// What a run reports as it goes.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A phase starts with `total` units (`what` names them: "account-regions planned").
    fn start(&self, what: &'static str, total: usize);
    /// One more unit is done.
    fn advance(&self);
    /// The phase ended.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _what: &'static str, _total: usize) {}
    fn advance(&self) {}
    fn finish(&self) {}
}
