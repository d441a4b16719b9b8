//! Everything that talks to Alibaba Cloud: request signing, response decoding, the HTTP client
//! and credentials.
