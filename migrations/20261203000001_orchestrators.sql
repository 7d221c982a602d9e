-- Fan-out and stage values (issue 15).
--
-- A stage with `for_each` is expanded when its upstream stages succeed: one row per item
-- (`fan_of` names the template's stage, `item_index` and `item` say which instance),
-- named `<stage>.<index>` so names stay unique in a run. The template's own row stays
-- as the group: `fanned` says how many instances it has, and it succeeds when they all
-- have.
alter table run_stages
    -- The stage's `for_each` reference, kept to expand it without reading the template.
    add column for_each text,
    add column fan_of text,
    add column item_index integer check (item_index >= 0),
    add column item jsonb,
    add column fanned integer check (fanned >= 0),
    -- The JSON a stage ended with (a LangGraph stage's final values), for `${stages.NAME.values}`.
    add column stage_values jsonb,
    add constraint run_stages_instance check ((fan_of is null) = (item_index is null));
create index run_stages_fan_of on run_stages (run_id, fan_of) where fan_of is not null;
