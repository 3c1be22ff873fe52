/** Types of scripts/sdk-types.mjs (for the TypeScript tests that import it). */
export declare const SDK_TYPES_FILE: string;
export declare function generateSdkTypes(doc: Record<string, unknown>): Promise<string>;
