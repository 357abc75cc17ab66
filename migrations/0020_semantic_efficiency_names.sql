-- semantic_mi 1.0.0 reported G / H(Y) as `efficiency` in probabilities mode. From 2.0.0
-- `efficiency` is Lu's G / R (R the Shannon MI of the same channel) in every mode, and G / H(Y) is
-- `normalized_semantic_mi`. Stored 1.0.0 results get the right name for the number they hold; their
-- `efficiency` becomes null with a reason (1.0.0 did not estimate R in probabilities mode).
UPDATE results
   SET details = (details - 'efficiency' - 'efficiency_reason')
       || jsonb_build_object(
            'normalized_semantic_mi', details -> 'efficiency',
            'efficiency', NULL,
            'efficiency_reason',
            'not computed by semantic_mi 1.0.0 in probabilities mode (its efficiency was G / H(Y), now normalized_semantic_mi)')
 WHERE estimator = 'semantic_mi'
   AND estimator_version = '1.0.0'
   AND details ->> 'mode' = 'probabilities'
   AND details ? 'efficiency';
