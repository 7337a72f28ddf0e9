//! What a request handler tells the connection loop, shared by the server and the handlers
//! that may end a connection.

/// Whether a connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Serve the next request.
    Continue,
    /// Close the connection.
    Close,
}
