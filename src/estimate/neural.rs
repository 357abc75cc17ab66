//! stub
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    InfoNce,
    Mine,
    Nwj,
    Smile,
}
