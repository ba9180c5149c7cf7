//! Product: a catalog entry that time sales sell.
//!
//! Supervised by `Region<Product>`; persistence id `product:{id}` (a UUIDv7).
//! Accepts: create, get. Journals: `Created`. A product is plain catalog data; it is an
//! entity only so that it lives in the same journal, with the same durability and recovery,
//! as everything else, and needs no table of its own.
//!
//! # Invariants
//! - a created product has a name and a price >= 0.

use serde::{Deserialize, Serialize};

use super::{Ctx, Decision, Entity};
use crate::{ErrorCode, Rejection};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    pub id: String,
    pub name: String,
    pub price: i64,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub details: Option<ProductDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub name: String,
    pub price: i64,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    Create(ProductDetails),
    Get,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductEvent {
    Created(ProductDetails),
}

impl Product {
    pub fn view_of(&self, details: &ProductDetails) -> ProductView {
        ProductView {
            id: self.id.clone(),
            name: details.name.clone(),
            price: details.price,
            description: details.description.clone(),
        }
    }
}

impl Entity for Product {
    const KIND: &'static str = "product";
    const VERSION: u8 = 1;

    type Command = ProductCommand;
    type Event = ProductEvent;
    type Reply = ProductView;

    fn blank(id: &str) -> Self {
        Product {
            id: id.to_string(),
            details: None,
        }
    }

    fn exists(&self) -> bool {
        self.details.is_some()
    }

    fn decide(&self, command: &ProductCommand, _ctx: &Ctx) -> Result<Decision<Self>, Rejection> {
        match (command, &self.details) {
            (ProductCommand::Create(details), None) => {
                if details.name.trim().is_empty() || details.price < 0 {
                    return Err(Rejection::validation(
                        "name",
                        "a product needs a name and a price >= 0",
                    ));
                }
                Ok(Decision {
                    events: vec![ProductEvent::Created(details.clone())],
                    reply: self.view_of(details),
                })
            }
            (ProductCommand::Create(_), Some(_)) => Err(Rejection::new(
                ErrorCode::Conflict,
                format!("product {} already exists", self.id),
            )),
            (ProductCommand::Get, Some(details)) => Ok(Decision::reply(self.view_of(details))),
            (ProductCommand::Get, None) => Err(Rejection::not_found(format!(
                "product {} not found",
                self.id
            ))),
        }
    }

    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::Created(details) => self.details = Some(details.clone()),
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        match &self.details {
            Some(d) if d.name.trim().is_empty() || d.price < 0 => Err(format!(
                "product {} has no name or a negative price",
                self.id
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> ProductDetails {
        ProductDetails {
            name: "Runner 2".into(),
            price: 129_000,
            description: None,
        }
    }

    #[test]
    fn a_product_is_created_once_then_read() {
        let ctx = Ctx { now_ms: 1 };
        let mut product = Product::blank("p1");
        let err = product
            .decide(&ProductCommand::Get, &ctx)
            .expect_err("absent");
        assert_eq!(err.code, ErrorCode::NotFound);
        let decision = product
            .decide(&ProductCommand::Create(details()), &ctx)
            .expect("created");
        decision.events.iter().for_each(|e| product.apply(e));
        assert_eq!(decision.reply.price, 129_000);
        let again = product.decide(&ProductCommand::Create(details()), &ctx);
        assert_eq!(again.expect_err("exists").code, ErrorCode::Conflict);
        let read = product.decide(&ProductCommand::Get, &ctx).expect("read");
        assert_eq!(read.reply, decision.reply);
        assert!(read.events.is_empty());
    }

    #[test]
    fn a_product_without_a_name_or_with_a_negative_price_is_refused() {
        let ctx = Ctx { now_ms: 1 };
        let product = Product::blank("p1");
        for bad in [
            ProductDetails {
                name: " ".into(),
                ..details()
            },
            ProductDetails {
                price: -1,
                ..details()
            },
        ] {
            let err = product
                .decide(&ProductCommand::Create(bad), &ctx)
                .expect_err("refused");
            assert_eq!(err.code, ErrorCode::ValidationFailed);
        }
    }
}
