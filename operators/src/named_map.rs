//! `map` and `map_in_place` that take an operator name, so the per-operator timings (see
//! `observe/operator_timing.rs`) say "Enrich" or "Infer" instead of several anonymous "Map"s.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// Extension trait on streams of vectors.
pub trait NamedMapExt<'s, D: 'static> {
    /// Transforms every record in place.
    fn map_in_place_named(self, name: &str, logic: impl FnMut(&mut D) + 'static) -> Stream<'s, u64, Vec<D>>;
    /// Transforms every record into another.
    fn map_named<D2: 'static>(self, name: &str, logic: impl FnMut(D) -> D2 + 'static) -> Stream<'s, u64, Vec<D2>>;
}

impl<'s, D: 'static> NamedMapExt<'s, D> for Stream<'s, u64, Vec<D>> {
    fn map_in_place_named(self, name: &str, mut logic: impl FnMut(&mut D) + 'static) -> Stream<'s, u64, Vec<D>> {
        self.unary::<CapacityContainerBuilder<Vec<D>>, _, _, _>(Pipeline, name, move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for container in data {
                        container.iter_mut().for_each(&mut logic);
                        session.give_container(container);
                    }
                })
            }
        })
    }

    fn map_named<D2: 'static>(self, name: &str, mut logic: impl FnMut(D) -> D2 + 'static) -> Stream<'s, u64, Vec<D2>> {
        self.unary::<CapacityContainerBuilder<Vec<D2>>, _, _, _>(Pipeline, name, move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for container in data {
                        session.give_iterator(container.drain(..).map(&mut logic));
                    }
                })
            }
        })
    }
}
