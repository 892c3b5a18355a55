//! Reply: answers HTTP detect requests with their decision (or dead-letter) line, and passes
//! every chunk on unchanged, so HTTP events also reach the job's normal outputs and counts.

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::batch::OutputChunk;
use crate::source::http::{DetectChannel, DetectReply};

/// Sends the reply lines of one chunk to their waiting requests.
pub fn answer_chunk(channel: &DetectChannel, chunk: &OutputChunk) {
    for line in &chunk.replies {
        let range = line.start as usize..line.end as usize;
        let reply = match line.decision {
            true => DetectReply::Decision(chunk.decisions[range].to_vec()),
            false => DetectReply::DeadLetter(chunk.dead_letters[range].to_vec()),
        };
        channel.answer(line.request, reply);
    }
}

/// Extension trait: `chunks.reply(channel)`.
pub trait ReplyExt<'s> {
    /// Answers the HTTP requests among the chunks' lines.
    fn reply(self, channel: Arc<DetectChannel>) -> Stream<'s, u64, Vec<OutputChunk>>;
}

impl<'s> ReplyExt<'s> for Stream<'s, u64, Vec<OutputChunk>> {
    fn reply(self, channel: Arc<DetectChannel>) -> Stream<'s, u64, Vec<OutputChunk>> {
        self.unary::<CapacityContainerBuilder<Vec<OutputChunk>>, _, _, _>(Pipeline, "Reply", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for container in data {
                        for chunk in container.iter().filter(|c| !c.replies.is_empty()) {
                            answer_chunk(&channel, chunk);
                        }
                        session.give_container(container);
                    }
                })
            }
        })
    }
}
