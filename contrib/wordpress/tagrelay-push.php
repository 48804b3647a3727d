<?php
/**
 * Plugin Name: tagrelay push
 * Description: Tells tagrelay the moment a post is published, updated or unpublished, so that it polls the site at once instead of at its next interval.
 * Version:     1.0.0
 * Requires PHP: 7.4
 * License:     MIT
 *
 * Install (docs/deploy.md, "Push"): copy this file into wp-content/mu-plugins/ (a must-use plugin: it
 * loads without being activated), then add to wp-config.php, above "That's all, stop editing!":
 *
 *     define( 'TAGRELAY_PUSH_URL', 'https://relay.example.org/hooks/archive' );
 *     define( 'TAGRELAY_PUSH_SECRET', '<the value of the variable the source's push_secret_env names>' );
 *
 * where "archive" is the source's name in tagrelay's configuration. Without both constants the plugin
 * does nothing.
 *
 * The request it sends (the one tagrelay checks, bot/domain/push.py):
 *
 *     POST <TAGRELAY_PUSH_URL>
 *     Content-Type: application/json
 *     X-Tagrelay-Timestamp: <Unix time in seconds>
 *     X-Tagrelay-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<source>.<body>" under the secret>
 *
 *     {"event":"publish|update|unpublish","post_id":123,"type":"post","url":"https://…","nonce":"<16 hex>"}
 *
 * <source> is the last path segment of TAGRELAY_PUSH_URL. The body is only a trigger: tagrelay polls
 * the source and believes what the source says, never this body (the URL is logged). The nonce makes
 * two saves of one post within the same second two calls, where tagrelay would refuse the second,
 * byte for byte the same, as a replay.
 *
 * Sent without waiting ('blocking' => false): saving a post never waits for tagrelay, and a tagrelay
 * that is down costs nothing but the push (its polling still finds the post). At most one call per
 * post and event per PHP request (the block editor saves twice).
 *
 * Filters: 'tagrelay_push_post_types' (default array( 'post' )) chooses the post types that push;
 * 'tagrelay_push_request' may change the request arguments before they are sent.
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The event a status change is: 'publish' (first publication), 'update' (a published post saved
 * again), 'unpublish' (a published post moved to draft, pending, private, trash…); null for others.
 *
 * @param string $new_status The post's new status.
 * @param string $old_status The post's old status.
 * @return string|null
 */
function tagrelay_push_event( $new_status, $old_status ) {
	if ( 'publish' === $new_status ) {
		return 'publish' === $old_status ? 'update' : 'publish';
	}
	if ( 'publish' === $old_status ) {
		return 'unpublish';
	}
	return null;
}

/**
 * The source's name: the last path segment of the hook URL.
 *
 * @param string $url TAGRELAY_PUSH_URL.
 * @return string
 */
function tagrelay_push_source( $url ) {
	$path  = (string) wp_parse_url( $url, PHP_URL_PATH );
	$parts = explode( '/', trim( $path, '/' ) );
	return rawurldecode( (string) end( $parts ) );
}

/**
 * The arguments of wp_remote_post() for one event: the JSON body, signed.
 *
 * @param string  $url       TAGRELAY_PUSH_URL.
 * @param string  $secret    TAGRELAY_PUSH_SECRET.
 * @param string  $event     'publish', 'update' or 'unpublish'.
 * @param WP_Post $post      The post.
 * @param int     $timestamp Unix time in seconds.
 * @return array
 */
function tagrelay_push_request( $url, $secret, $event, $post, $timestamp ) {
	$permalink = get_permalink( $post );
	$body      = wp_json_encode(
		array(
			'event'   => $event,
			'post_id' => (int) $post->ID,
			'type'    => (string) $post->post_type,
			'url'     => is_string( $permalink ) ? $permalink : '',
			'nonce'   => bin2hex( random_bytes( 8 ) ),
		)
	);
	$stamp     = (string) $timestamp;
	$signature = hash_hmac( 'sha256', $stamp . '.' . tagrelay_push_source( $url ) . '.' . $body, $secret );
	return array(
		'method'      => 'POST',
		'blocking'    => false,
		'timeout'     => 3,
		'redirection' => 0,
		'headers'     => array(
			'Content-Type'         => 'application/json',
			'X-Tagrelay-Timestamp' => $stamp,
			'X-Tagrelay-Signature' => 'sha256=' . $signature,
		),
		'body'        => $body,
		'data_format' => 'body',
	);
}

/**
 * The 'transition_post_status' action: push publish, update and unpublish of the chosen post types.
 *
 * @param string  $new_status The post's new status.
 * @param string  $old_status The post's old status.
 * @param WP_Post $post       The post.
 * @return void
 */
function tagrelay_push_on_transition( $new_status, $old_status, $post ) {
	static $sent = array();
	if ( ! defined( 'TAGRELAY_PUSH_URL' ) || ! defined( 'TAGRELAY_PUSH_SECRET' ) ) {
		return;
	}
	if ( ! is_object( $post ) || ! isset( $post->ID, $post->post_type ) ) {
		return;
	}
	if ( wp_is_post_revision( $post ) || wp_is_post_autosave( $post ) ) {
		return;
	}
	$types = (array) apply_filters( 'tagrelay_push_post_types', array( 'post' ) );
	if ( ! in_array( $post->post_type, $types, true ) ) {
		return;
	}
	$event = tagrelay_push_event( (string) $new_status, (string) $old_status );
	if ( null === $event ) {
		return;
	}
	$key = $post->ID . ':' . $event;
	if ( isset( $sent[ $key ] ) ) {
		return;
	}
	$sent[ $key ] = true;
	$url     = (string) TAGRELAY_PUSH_URL;
	$request = tagrelay_push_request( $url, (string) TAGRELAY_PUSH_SECRET, $event, $post, time() );
	$request = apply_filters( 'tagrelay_push_request', $request, $event, $post );
	wp_remote_post( $url, $request );
}

add_action( 'transition_post_status', 'tagrelay_push_on_transition', 10, 3 );
