{#-
    transaction_features(windowed, inputs): the final feature row for every row of `windowed` (a
    relation or CTE shaped like int_transactions_windowed): the user's attributes as of the
    transaction, the preprocessing parameters fitted on the training window applied, and the label.
    `inputs` names the relations read (CTE names or relations the caller passes; the macro refs
    nothing): `parameters` (shaped like preprocessing_parameters), `users` (online_users), `tiers`
    (online_user_tiers), `labels` (transaction_labels), each read once; optional `run_date_end` (SQL:
    the moment labels are known before; default the end of the parameters' run_date).
    Used by fct_transaction_features (batch, a view: macros/features/gold_views.sql) and
    realtime_transaction_features (speed layer).
-#}
{% macro transaction_features(windowed, inputs) %}
    {%- for role in ['parameters', 'users', 'tiers', 'labels'] if not inputs.get(role) %}
        {{ exceptions.raise_compiler_error(
            "transaction_features: inputs['" ~ role ~ "'] is required (a CTE name or a relation the model reads)"
        ) }}
    {%- endfor %}
    {#- the end of the run date labels are known by: the parameters' run_date, or `run_date_end` when given
        (the realtime speed layer: the published parameters may predate that column, after an upgrade) -#}
    {%- set labels_known_before = inputs.get('run_date_end')
        or 'cast(' ~ dbt.dateadd('day', 1, 'fitted_parameters.run_date') ~ ' as ' ~ dbt.type_timestamp() ~ ')' %}
    select
        ---------- ids and time
        windowed.transaction_id,
        windowed.user_id,
        windowed.created_at,
        windowed.transaction_date,
        ---------- amount, with the fitted scaler and outlier threshold applied
        windowed.amount_usd,
        (cast(windowed.amount_usd as {{ type_double() }}) - fitted_parameters.amount_usd_mean)
        / nullif(fitted_parameters.amount_usd_stddev, 0) as amount_usd_scaled,
        coalesce(windowed.amount_usd > fitted_parameters.amount_usd_p99, false) as is_amount_outlier,
        ---------- calendar (utc)
        cast({{ date_part_hour('windowed.created_at') }} as {{ dbt.type_int() }}) as hour_of_day,
        cast({{ iso_day_of_week('windowed.created_at') }} - 1 as {{ dbt.type_int() }}) as day_of_week,
        {{ iso_day_of_week('windowed.created_at') }} in (6, 7) as is_weekend,
        ---------- point-in-time history
        windowed.user_txn_count_1d,
        windowed.user_txn_count_7d,
        windowed.user_txn_count_30d,
        windowed.user_amount_sum_7d,
        windowed.user_amount_sum_30d,
        windowed.user_amount_mean_30d,
        windowed.seconds_since_prev_txn,
        windowed.session_events_before_txn,
        ---------- the user as of the transaction
        cast(floor(
            ({{ epoch_microseconds('windowed.created_at') }} - {{ epoch_microseconds('user_attributes.signup_at') }})
            / {{ days_in_microseconds(1) }}.0
        ) as {{ dbt.type_int() }}) as user_tenure_days,
        coalesce(cast(user_attributes.age as {{ type_double() }}), fitted_parameters.median_age) as age,
        user_attributes.age is null as is_age_imputed,
        user_attributes.country_group = 'us' as country_us,
        user_attributes.country_group = 'uk' as country_uk,
        user_attributes.country_group = 'ca' as country_ca,
        user_attributes.country_group = 'au' as country_au,
        user_attributes.country_group = 'other' as country_other,
        windowed.device_group = 'mobile' as device_mobile,
        windowed.device_group = 'desktop' as device_desktop,
        windowed.device_group = 'tablet' as device_tablet,
        windowed.device_group = 'other' as device_other,
        users_history.loyalty_tier,
        ---------- label: a chargeback reported within label_window_days, known by the end of the run date
        ---------- (the fitted parameters' run_date: the build's, wherever the rows are read)
        coalesce(
            labels.first_reported_at
            <= {{ timestamp_add('day', var('label_window_days'), 'windowed.created_at') }}
            and labels.first_reported_at < {{ labels_known_before }},
            false
        ) as is_fraud,
        {{ timestamp_add('day', var('label_window_days'), 'windowed.created_at') }}
        <= {{ labels_known_before }} as is_label_matured
    from {{ windowed }} as windowed
    inner join {{ inputs['users'] }} as user_attributes
        on windowed.user_id = user_attributes.user_id
    left join {{ inputs['tiers'] }} as users_history
        on
            windowed.user_id = users_history.user_id
            and windowed.created_at >= users_history.valid_from
            -- an equality and two ranges, no `or`: DuckDB then hash-joins on user_id (with `or dbt_valid_to
            -- is null` it fell back to a nested loop, comparing every transaction with every version)
            and windowed.created_at
            < coalesce(users_history.valid_to, cast('9999-12-31 00:00:00' as {{ dbt.type_timestamp() }}))
    left join {{ inputs['labels'] }} as labels
        on windowed.transaction_id = labels.transaction_id
    cross join {{ inputs['parameters'] }} as fitted_parameters
{% endmacro %}
