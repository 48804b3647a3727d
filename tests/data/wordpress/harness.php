<?php
/*
 * Runs contrib/wordpress/tagrelay-push.php under php-cli, with stand-ins for the few WordPress functions it
 * calls (tests/integration/test_wordpress_plugin.py). The post status transitions come as JSON on stdin
 * ([{"new": "publish", "old": "draft", "post": {"ID": 1, "post_type": "post", "permalink": "…"}}, …]); the
 * requests the plugin hands to wp_remote_post() go to stdout as JSON. The constants come from the
 * environment (TAGRELAY_PUSH_URL, TAGRELAY_PUSH_SECRET; unset: not defined).
 */

define( 'ABSPATH', __DIR__ . '/' );
foreach ( array( 'TAGRELAY_PUSH_URL', 'TAGRELAY_PUSH_SECRET' ) as $name ) {
	if ( false !== getenv( $name ) ) {
		define( $name, getenv( $name ) );
	}
}

$GLOBALS['tagrelay_test_actions'] = array();
$GLOBALS['tagrelay_test_sent']    = array();

function add_action( $hook, $callback, $priority = 10, $accepted_args = 1 ) {
	$GLOBALS['tagrelay_test_actions'][ $hook ][] = array( $callback, $priority, $accepted_args );
	return true;
}

function apply_filters( $hook, $value ) {
	return $value;
}

function wp_parse_url( $url, $component = -1 ) {
	return parse_url( $url, $component );
}

function wp_json_encode( $data ) {
	return json_encode( $data );  // what WordPress's wp_json_encode() does with these values
}

function get_permalink( $post ) {
	return isset( $post->permalink ) ? $post->permalink : false;
}

function wp_is_post_revision( $post ) {
	return ! empty( $post->revision );
}

function wp_is_post_autosave( $post ) {
	return ! empty( $post->autosave );
}

function wp_remote_post( $url, $args ) {
	$GLOBALS['tagrelay_test_sent'][] = array( 'url' => $url, 'args' => $args );
	return array();
}

require __DIR__ . '/../../../contrib/wordpress/tagrelay-push.php';

$transitions = json_decode( stream_get_contents( STDIN ) );
foreach ( $transitions as $t ) {
	foreach ( $GLOBALS['tagrelay_test_actions']['transition_post_status'] as $action ) {
		call_user_func( $action[0], $t->new, $t->old, $t->post );
	}
}
echo json_encode(
	array(
		'actions' => array_map(
			function ( $a ) {
				return array( 'priority' => $a[1], 'accepted_args' => $a[2] );
			},
			$GLOBALS['tagrelay_test_actions']['transition_post_status']
		),
		'sent'    => $GLOBALS['tagrelay_test_sent'],
	)
);
