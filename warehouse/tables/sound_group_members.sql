-- sound_group_members: which clips are the same sound (pipeline.tasks.common.sound_groups).
-- Rewritten whole by each grouping run (one partition); read through the view
-- `sound_groups`. Kept in step with pipeline.tasks.common.sound_groups.SoundGroupRecord.
CREATE TABLE sound_group_members (
    sound_group  VARCHAR NOT NULL,  -- the smallest clip_id of the group (stable, readable)
    clip_id      VARCHAR NOT NULL,
    linked_by    VARCHAR NOT NULL,  -- link kinds joining this clip to its group, ',' separated; 'self' when alone
    identities   VARCHAR[],         -- metadata identities of the clip (freesound:<id>, youtube:<id>@<start>, ...)
    group_size   BIGINT NOT NULL,
    run_id       VARCHAR NOT NULL,
    grouped_at   TIMESTAMPTZ NOT NULL
);
