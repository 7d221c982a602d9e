//! The workflow pages: the list with the add form, and a workflow's page (its nodes,
//! bindings, versions and what the endpoint lacks).
