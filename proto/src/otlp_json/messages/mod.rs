//! The [`Msg`](super::Msg) mapping of every message of the four export requests.

/// Messages that only wrap one list of messages (`Gauge`'s `dataPoints`, `ArrayValue`'s
/// `values`): one mapping for all of them.
macro_rules! list_wrapper {
    ($($ty:ty => $key:literal $field:ident),* $(,)?) => {$(
        impl crate::otlp_json::Msg for $ty {
            fn write<M: serde::ser::SerializeMap>(
                &self,
                o: &mut crate::otlp_json::write::Out<'_, M>,
            ) -> Result<(), M::Error> {
                o.msgs($key, &self.$field)
            }

            fn read<'de, A: serde::de::MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
                match key {
                    $key => self.$field = crate::otlp_json::read::msgs(a)?,
                    _ => crate::otlp_json::read::skip(a)?,
                }
                Ok(())
            }
        }
    )*};
}

mod common;
mod logs;
mod metrics;
mod profiles;
mod traces;
