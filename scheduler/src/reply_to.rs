//! Which AMQP reply queues a request may name (docs/api.md, "Reply queues").
//!
//! The scheduler publishes replies with its own broker user, which may write to every queue of the
//! farm; `reply_to` is chosen by the requester. So a reply goes only to a queue the requester may use:
//!
//! - RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`, `amq.rabbitmq.reply-to.*`) and broker-named
//!   queues (`amq.gen-*`): private to the connection that made them, with names nobody else knows;
//! - the tenant's own reply queues, `{prefix}.reply.{tenant}` and `{prefix}.reply.{tenant}:{anything}`
//!   (`:` cannot occur in a tenant id, so no tenant's name is a prefix of another's queues).
//!
//! Everything else is refused: the farm's own queues (`{prefix}.*`: requests, jobs, events, their dead
//! letters, the scheduler's claim), another tenant's reply queues, and any other queue of the broker.

use reverie_shared::ids::TenantId;

/// Why a `reply_to` was refused; the label of `reverie_replies_undelivered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Empty, longer than AMQP allows (255 bytes) or with control characters.
    Malformed,
    /// One of the farm's own queues (or names of the farm's namespace that are not reply queues).
    FarmQueue,
    /// A tenant reply queue of another tenant (or of a tenant a request could not prove to be).
    OtherTenant,
    /// Any other queue of the broker.
    Foreign,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::FarmQueue => "farm_queue",
            Refusal::OtherTenant => "other_tenant",
            Refusal::Foreign => "foreign",
        }
    }
}

/// The name every reply queue of `tenant` starts with.
pub fn tenant_reply_queue(queue_prefix: &str, tenant: &TenantId) -> String {
    format!("{queue_prefix}.reply.{tenant}")
}

/// Whether a request acting for `tenant` (`None`: a sender that could not be identified) may have its
/// replies published to `reply_to`.
pub fn check(queue_prefix: &str, reply_to: &str, tenant: Option<&TenantId>) -> Result<(), Refusal> {
    if reply_to.is_empty() || reply_to.len() > 255 || reply_to.chars().any(char::is_control) {
        return Err(Refusal::Malformed);
    }
    if reply_to == "amq.rabbitmq.reply-to"
        || reply_to.starts_with("amq.rabbitmq.reply-to.")
        || (reply_to.starts_with("amq.gen-") && reply_to.len() > "amq.gen-".len())
    {
        return Ok(());
    }
    let replies = format!("{queue_prefix}.reply.");
    if let Some(rest) = reply_to.strip_prefix(&replies) {
        let named = rest.split(':').next().unwrap_or_default();
        return match tenant {
            Some(tenant) if named == tenant.as_str() => Ok(()),
            _ => Err(Refusal::OtherTenant),
        };
    }
    if reply_to == queue_prefix
        || reply_to.starts_with(&format!("{queue_prefix}."))
        || reply_to.starts_with("amq.")
    {
        return Err(Refusal::FarmQueue);
    }
    Err(Refusal::Foreign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).unwrap()
    }

    #[test]
    fn private_and_own_reply_queues_are_allowed() {
        let anna = tenant("anna");
        for queue in [
            "amq.rabbitmq.reply-to",
            "amq.rabbitmq.reply-to.g1h2AA==.abc",
            "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
            "reverie.reply.anna",
            "reverie.reply.anna:orders-7",
        ] {
            assert_eq!(check("reverie", queue, Some(&anna)), Ok(()), "{queue}");
        }
        // A private queue is fine even for a sender that could not be identified (a rejection goes
        // back to whoever made the queue).
        assert_eq!(check("reverie", "amq.gen-abc", None), Ok(()));
    }

    #[test]
    fn the_farms_queues_are_refused() {
        let anna = tenant("anna");
        let queues = reverie_shared::queues::QueueNames::new("reverie");
        for queue in [
            queues.requests.clone(),
            queues.generate.clone(),
            queues.analyse.clone(),
            queues.events.clone(),
            queues.scheduler_claim.clone(),
            reverie_shared::ports::queue::dead_queue_name(&queues.generate),
            reverie_shared::ports::queue::dead_queue_name(&queues.events),
            "reverie".to_string(),
            "reverie.replies-anna".to_string(),
            "amq.gen-".to_string(),
            "amq.direct".to_string(),
        ] {
            assert_eq!(
                check("reverie", &queue, Some(&anna)),
                Err(Refusal::FarmQueue),
                "{queue}"
            );
        }
    }

    #[test]
    fn another_tenants_reply_queues_are_refused() {
        let anna = tenant("anna");
        for queue in [
            "reverie.reply.bob",
            "reverie.reply.bob:x",
            // "anna.x" is another tenant: its queues are not anna's.
            "reverie.reply.anna.x",
            "reverie.reply.anna.x:y",
            "reverie.reply.ann",
            "reverie.reply.",
        ] {
            assert_eq!(
                check("reverie", queue, Some(&anna)),
                Err(Refusal::OtherTenant),
                "{queue}"
            );
        }
        assert_eq!(
            check("reverie", "reverie.reply.anna", None),
            Err(Refusal::OtherTenant)
        );
    }

    #[test]
    fn other_queues_and_bad_names_are_refused() {
        let anna = tenant("anna");
        assert_eq!(
            check("reverie", "billing.invoices", Some(&anna)),
            Err(Refusal::Foreign)
        );
        assert_eq!(
            check("reverie", "other-farm.jobs.generate", Some(&anna)),
            Err(Refusal::Foreign)
        );
        assert_eq!(check("reverie", "", Some(&anna)), Err(Refusal::Malformed));
        assert_eq!(
            check("reverie", &"q".repeat(256), Some(&anna)),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            check("reverie", "reverie.reply.anna\n", Some(&anna)),
            Err(Refusal::Malformed)
        );
    }
}
