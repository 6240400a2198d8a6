-- sound_groups: one row per clip with the sound it belongs to (pipeline.tasks.common.sound_groups).
--   sound_group  the group's name: its smallest clip_id; a clip not linked to any other is
--                its own group (also clips ingested after the last grouping run)
--   linked_by    link kinds joining the clip to its group: freesound_id, youtube_segment,
--                clotho_file, fingerprint, embedding (',' separated); 'self' when alone
CREATE OR REPLACE VIEW sound_groups AS
SELECT coalesce(m.sound_group, c.clip_id) AS sound_group,
       c.clip_id,
       coalesce(m.linked_by, 'self') AS linked_by,
       c.source,
       c.split AS source_split,
       coalesce(m.group_size, 1) AS group_size,
       m.identities
FROM clips c
LEFT JOIN sound_group_members m USING (clip_id);
