//! Answers computed from a model's results, kept with the model's results generation
//! (`models.results_generation`, bumped by every insert or delete of a result) read before they
//! were computed: an entry is used only while the generation is unchanged.

/// A bounded map from a key to a value and the generation it was computed at.
pub struct GenerationCache<V>(std::sync::Mutex<std::collections::HashMap<String, (i64, V)>>);

impl<V> Default for GenerationCache<V> {
    fn default() -> Self {
        GenerationCache(Default::default())
    }
}

impl<V: Clone> GenerationCache<V> {
    /// At most this many entries are kept; past it the cache starts over.
    const CAPACITY: usize = 1024;

    pub fn get(&self, key: &str, generation: i64) -> Option<V> {
        let map = self.0.lock().ok()?;
        map.get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: String, generation: i64, value: V) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= Self::CAPACITY && !map.contains_key(&key) {
                map.clear();
            }
            map.insert(key, (generation, value));
        }
    }
}
