//! Trees: a stage's output is a set of named files (checkpoint, tokenizer, config, metrics, log).
//! Each file is an object; the tree is a small canonical JSON object listing them, itself stored
//! as an object. The tree's id is the stage's output content address.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

pub const TREE_SCHEMA: &str = "medrun-tree-v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    pub object: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub schema: String,
    pub entries: BTreeMap<String, TreeEntry>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            schema: TREE_SCHEMA.into(),
            entries: BTreeMap::new(),
        }
    }
}

impl Tree {
    /// Canonical bytes (sorted keys, no whitespace).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn put(&self, store: &Store) -> Result<String, StoreError> {
        store.put_bytes(&self.to_bytes())
    }

    pub fn load(store: &Store, id: &str) -> Result<Tree, StoreError> {
        let bytes = store.get(id)?;
        Tree::parse(&bytes).ok_or_else(|| StoreError::Malformed {
            what: format!("tree {id}"),
            message: "not a medrun tree".into(),
        })
    }

    /// Parse bytes as a tree; `None` if they are not one.
    pub fn parse(bytes: &[u8]) -> Option<Tree> {
        if !bytes.starts_with(b"{\"entries\"") && !bytes.starts_with(b"{\"schema\"") {
            return None;
        }
        serde_json::from_slice::<Tree>(bytes)
            .ok()
            .filter(|t| t.schema == TREE_SCHEMA)
    }
}
