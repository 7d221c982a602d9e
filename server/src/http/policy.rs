//! The access policy lives in `app::access`, where server functions apply it to their own
//! paths; the middleware applies the same functions to every request.

pub use app::access::{allowed, canonical, is_page};

#[cfg(test)]
mod tests {
    #[test]
    fn the_webhook_path_the_policy_opens_is_the_one_the_handler_serves() {
        assert_eq!(crate::colab::webhook::PATH, app::access::COLAB_WEBHOOK);
    }
}
