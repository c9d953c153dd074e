//! The dr-syncer images `images/build.sh` built (and `make test-lab` loaded into the lab's nodes).

use crate::repo_root;

/// The reference of image `name` (`controller`, `agent`): tag from `IMAGE_TAG`, else `target/images/tag`; `None`
/// when neither exists (images not built).
pub fn try_image(name: &str) -> Option<String> {
    let tag = std::env::var("IMAGE_TAG").ok().filter(|t| !t.is_empty()).or_else(|| {
        std::fs::read_to_string(repo_root().join("target/images/tag")).ok().map(|t| t.trim().to_string())
    })?;
    Some(format!("localhost/dr-syncer/{name}:{tag}"))
}

/// Like [`try_image`], for tests that need the image: panics with what to do when it was not built.
pub fn image(name: &str) -> String {
    try_image(name).unwrap_or_else(|| panic!("no image {name}: build the images (images/build.sh) or set IMAGE_TAG"))
}
