//! InitProducerId: hands out producer ids for idempotent producers (librdkafka and
//! kafka-python 3 turn idempotence on by default). Transactions are not implemented.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub fn handle(broker: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        tracing::warn!("refused a transactional producer: rill does not implement transactions");
        return response.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    // KIP-360: a producer that already has an id asks for an epoch bump to reset its
    // sequences after an error; give it the same id with the next epoch while epochs last.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return response
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.meta.next_producer_id() {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!("cannot allocate a producer id: {e}");
            response.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
